"""What a notification says, its id, and when its push may go: shared by the one-by-one handler
(handler.py) and the batch handler (batch.py), so both make the very same rows and pushes."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Model

from tasks_app.events import GOAL_DELETED, PROJECT_DELETED, TASK_COMPLETED, TASK_DELETED
from tasks_app.models import Goal, Project, Task

from ..events import GOAL_REACHED, PROJECT_COMPLETED
from ..models import Notification, Preferences
from ..progress.figures import zone_named
from .push import PushMessage

# A notification's id comes from its event. A worker killed after FCM took a push, and
# before its receipt committed, rolls the first row back; the retry makes the same id,
# so the repeated push carries the same collapse id and the device shows it once.
NOTIFICATION_ID_NAMESPACE = uuid.UUID("5f0c7d4e-2b8a-4c1e-9a57-3d6e1f0b8c21")

# The version of the payloads this subscriber reads.
PAYLOAD_VERSION = 1

# What each notifying event is about: the subject's model and the payload key naming it.
SUBJECT: dict[str, tuple[type[Model], str]] = {
    TASK_COMPLETED: (Task, "task_id"),
    PROJECT_COMPLETED: (Project, "project_id"),
    GOAL_REACHED: (Goal, "goal_id"),
}

# A deleted subject's id, as its notifications' data names it.
FORGET = {TASK_DELETED: "task_id", PROJECT_DELETED: "project_id", GOAL_DELETED: "goal_id"}


def notification_id(event_id: int) -> uuid.UUID:
    return uuid.uuid5(NOTIFICATION_ID_NAMESPACE, str(event_id))


def describe(event_type: str, subject: Task | Project | Goal) -> tuple[str, str, dict[str, str]]:
    """The title, body and data of the notification `event_type` makes about `subject`."""
    if event_type == TASK_COMPLETED:
        return "Task completed", f"🎉 You completed “{subject.title}”!", {"task_id": str(subject.pk)}
    if event_type == PROJECT_COMPLETED:
        return "Project complete", f"🏁 “{subject.title}” is done.", {"project_id": str(subject.pk)}
    return "Goal reached", f"🏆 You reached “{subject.title}”!", {"goal_id": str(subject.pk)}


def push_message(notification: Notification, token: str) -> PushMessage:
    return PushMessage(
        token=token,
        title=notification.title,
        body=notification.body,
        collapse_id=str(notification.pk),
        data={**notification.data, "notification_id": str(notification.pk)},
    )


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
