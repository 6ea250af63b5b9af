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
When deliveries pile up, a message's many go through `batch.notify_many` (the same rows and
pushes, one push call for all); what needs a delivery of its own (quiet hours, a device to
retry, an unreadable payload) it leaves to this handler, run one by one after it.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from outbox.api import Deferred, Event, RetryPolicy, TransientError, subscriber
from tasks_app.events import GOAL_DELETED, PROJECT_DELETED, TASK_COMPLETED, TASK_DELETED

from ..events import GOAL_REACHED, PROJECT_COMPLETED
from ..locks import hold_against_delete
from ..models import Device, Notification, Preferences, PushReceipt
from ..queues import Queue
from .batch import notify_many
from .content import (
    FORGET,
    NOTIFICATION_ID_NAMESPACE,
    PAYLOAD_VERSION,
    SUBJECT,
    describe,
    notification_id,
    push_message,
    quiet_hours_end,
)
from .push import Outcome, get_backend

logger = logging.getLogger(__name__)

# Re-exported: tests and older imports name them here.
__all__ = [
    "FORGET",
    "NOTIFICATION_ID_NAMESPACE",
    "ensure_notification",
    "forget",
    "notify",
    "quiet_hours_end",
]


@subscriber(
    "notifications",
    events=[TASK_COMPLETED, PROJECT_COMPLETED, GOAL_REACHED, TASK_DELETED, PROJECT_DELETED, GOAL_DELETED],
    queue=Queue.NOTIFICATIONS,
    retry=RetryPolicy(max_retries=8, backoff=2, backoff_max=300),
    # Many deliveries at once: one query per step and one push call for the whole batch; it
    # leaves quiet hours and devices to retry to this handler, one by one (batch.py).
    batch_handler=notify_many,
    atomic=False,
    task_name="workers.notifications.notify",
)
def notify(event: Event) -> None:
    event.require("user_id", version=PAYLOAD_VERSION)
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


def forget(event: Event) -> None:
    """Delete the notifications about the deleted task, project or goal (receipts cascade)."""
    key = FORGET[event.type]
    event.require(key, "user_id", version=PAYLOAD_VERSION)
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
                "id": notification_id(event.id),
                "owner_id": event.payload["user_id"],
                "kind": event.type,
                "title": title,
                "body": body,
                "data": data,
            },
        )
    return notification


def _content(event: Event) -> tuple[str, str, dict[str, str]] | None:
    model, key = SUBJECT[event.type]
    hold_against_delete(model, [event.payload.get(key)])
    subject = model.objects.filter(pk=event.payload.get(key)).first()
    if subject is None:
        return None
    return describe(event.type, subject)


def push(notification: Notification) -> None:
    """Push to every active device without a receipt for this notification; raise to retry the rest."""
    devices = list(
        Device.objects.filter(owner_id=notification.owner_id, active=True).exclude(
            receipts__notification=notification
        )
    )
    retry = []
    if devices:
        messages = [push_message(notification, d.token) for d in devices]
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
