"""Notifications: an in-app notification per event, then a push to each of the user's active devices.

Exactly one push per device: a PushReceipt row (unique per notification and device)
records each device's outcome as it happens. The subscriber is not atomic, so the
receipts of the devices that were reached stay committed when another device's
push fails transiently, and the retry pushes only to those still without one.
Quiet hours delay the push (not the in-app notification) until they end: the delivery
is deferred (`outbox.api.Deferred`) and the sweeper runs it again then, so a push that
fails after the quiet hours retries with the subscriber's own policy, attempts recorded.
A deleted task, project or goal takes its notifications (and their receipts) with it. The
subject is locked while its notification is made, so a delete waits for that and its own
delivery then finds the notification; one made after a delete finds no subject and is not made.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from outbox.api import Deferred, Event, RetryPolicy, TransientError, subscriber
from tasks_app.events import GOAL_DELETED, PROJECT_DELETED, TASK_COMPLETED, TASK_DELETED
from tasks_app.models import Goal, Project, Task

from ..events import GOAL_REACHED, PROJECT_COMPLETED
from ..locks import hold_against_delete
from ..models import Device, Notification, Preferences, PushReceipt
from ..progress.figures import zone_named
from ..queues import Queue
from .push import Outcome, PushMessage, get_backend

logger = logging.getLogger(__name__)

# A notification's id comes from its event. A worker killed after FCM took a push, and
# before its receipt committed, rolls the first row back; the retry makes the same id,
# so the repeated push carries the same collapse id and the device shows it once.
NOTIFICATION_ID_NAMESPACE = uuid.UUID("5f0c7d4e-2b8a-4c1e-9a57-3d6e1f0b8c21")


@subscriber(
    "notifications",
    events=[TASK_COMPLETED, PROJECT_COMPLETED, GOAL_REACHED, TASK_DELETED, PROJECT_DELETED, GOAL_DELETED],
    queue=Queue.NOTIFICATIONS,
    retry=RetryPolicy(max_retries=8, backoff=2, backoff_max=300),
    atomic=False,
    task_name="workers.notifications.notify",
)
def notify(event: Event) -> None:
    event.require("user_id", version=1)
    if event.type in FORGET:
        forget(event)
        return
    notification = ensure_notification(event)
    if notification is None:
        return
    # Locked: a replay of this subscriber and this delivery never push the same notification at once.
    notification = Notification.objects.select_for_update().get(pk=notification.pk)
    prefs = Preferences.objects.filter(user_id=notification.owner_id).first()
    if prefs and not prefs.push_enabled:
        return
    if prefs and (quiet_end := quiet_hours_end(prefs, timezone.now())):
        # Shown in the admin; committed with the deferral (the subscriber is not atomic).
        notification.push_due_at = quiet_end
        notification.save(update_fields=["push_due_at"])
        raise Deferred(quiet_end, "quiet hours")
    push(notification)


# A deleted subject's id, as its notifications' data names it.
FORGET = {TASK_DELETED: "task_id", PROJECT_DELETED: "project_id", GOAL_DELETED: "goal_id"}


def forget(event: Event) -> None:
    """Delete the notifications about the deleted task, project or goal (receipts cascade)."""
    key = FORGET[event.type]
    event.require(key, "user_id", version=1)
    subject_id = str(event.payload[key])
    _, by_model = Notification.objects.filter(
        owner_id=event.payload["user_id"], data__contains={key: subject_id}
    ).delete()
    logger.info(
        "notifications: %s %s forgotten: %d notifications removed (event %s)",
        key,
        subject_id,
        by_model.get(Notification._meta.label, 0),
        event.id,
    )


def ensure_notification(event: Event) -> Notification | None:
    """The in-app notification of this event, made once (keyed by the event)."""
    existing = Notification.objects.filter(event_id=event.id).first()
    if existing:
        return existing
    # The subject is held against deletion until the notification is committed.
    with transaction.atomic():
        content = _content(event)
        if content is None:
            logger.info("notifications: the subject of event %s is gone; nothing to notify", event.id)
            return None
        title, body, data = content
        notification, _ = Notification.objects.get_or_create(
            event_id=event.id,
            defaults={
                "id": uuid.uuid5(NOTIFICATION_ID_NAMESPACE, str(event.id)),
                "owner_id": event.payload["user_id"],
                "kind": event.type,
                "title": title,
                "body": body,
                "data": data,
            },
        )
    return notification


def _content(event: Event) -> tuple[str, str, dict[str, str]] | None:
    if event.type == TASK_COMPLETED:
        hold_against_delete(Task, [event.payload.get("task_id")])
        task = Task.objects.filter(pk=event.payload.get("task_id")).first()
        if task is None:
            return None
        return "Task completed", f"🎉 You completed “{task.title}”!", {"task_id": str(task.pk)}
    if event.type == PROJECT_COMPLETED:
        hold_against_delete(Project, [event.payload.get("project_id")])
        project = Project.objects.filter(pk=event.payload.get("project_id")).first()
        if project is None:
            return None
        return "Project complete", f"🏁 “{project.title}” is done.", {"project_id": str(project.pk)}
    hold_against_delete(Goal, [event.payload.get("goal_id")])
    goal = Goal.objects.filter(pk=event.payload.get("goal_id")).first()
    if goal is None:
        return None
    return "Goal reached", f"🏆 You reached “{goal.title}”!", {"goal_id": str(goal.pk)}


def quiet_hours_end(prefs: Preferences, now: datetime) -> datetime | None:
    """When the current quiet hours end, or None if it is not quiet now (windows may wrap midnight)."""
    start, end = prefs.quiet_hours_start, prefs.quiet_hours_end
    if start is None or end is None or start == end:
        return None
    zone = zone_named(prefs.time_zone)
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    quiet = start <= t < end if start < end else (t >= start or t < end)
    if not quiet:
        return None
    end_day = local.date() if t < end else local.date() + timedelta(days=1)
    return _at(end_day, end, zone)


def _at(day: object, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(ZoneInfo("UTC"))  # type: ignore[arg-type]


def push(notification: Notification) -> None:
    """Push to every active device without a receipt for this notification; raise to retry the rest."""
    devices = list(
        Device.objects.filter(owner_id=notification.owner_id, active=True).exclude(
            receipts__notification=notification
        )
    )
    retry = []
    if devices:
        messages = [
            PushMessage(
                token=d.token,
                title=notification.title,
                body=notification.body,
                collapse_id=str(notification.pk),
                data={**notification.data, "notification_id": str(notification.pk)},
            )
            for d in devices
        ]
        results = get_backend().send(messages)
        receipts = []
        for device, result in zip(devices, results, strict=True):
            if result.outcome == Outcome.RETRY:
                retry.append(f"{device.pk}: {result.error}")
                continue
            if result.outcome == Outcome.INVALID_TOKEN:
                Device.objects.filter(pk=device.pk).update(
                    active=False, deactivated_reason=result.error[:200]
                )
                logger.info("notifications: device %s deactivated: %s", device.pk, result.error)
            receipts.append(
                PushReceipt(
                    notification=notification,
                    device=device,
                    status=str(result.outcome),
                    provider_message_id=result.message_id,
                    error=result.error,
                )
            )
        PushReceipt.objects.bulk_create(receipts, ignore_conflicts=True)
        logger.info(
            "notifications: %s pushed to %d devices, %d to retry", notification.pk, len(receipts), len(retry)
        )
    if retry:
        raise TransientError(f"push to {len(retry)} devices must be retried: {'; '.join(retry)[:500]}")
    if notification.push_due_at is not None:
        notification.push_due_at = None
        notification.save(update_fields=["push_due_at"])
