"""The subscribers' audit checks: every delivery that succeeded left its effect, once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

from django.db.models import Count, Model

from outbox.audit import register_check
from outbox.models import Delivery
from tasks_app.events import TASK_COMPLETED
from tasks_app.models import Project, Task

from .models import MemoryEntry, Notification, ProgressSnapshot, PushReceipt, StorySegment
from .notifications.content import SUBJECT


def _succeeded(subscriber: str, event_type: str | None = None) -> Iterator[tuple[int, str, dict]]:
    qs = Delivery.objects.filter(subscriber=subscriber, status=Delivery.Status.SUCCEEDED)
    if event_type:
        qs = qs.filter(event__type=event_type)
    yield from qs.values_list("event_id", "event__type", "event__payload").iterator(chunk_size=5000)


def _live_keys(model: type[Model]) -> set[str]:
    return {str(pk) for pk in model._default_manager.values_list("pk", flat=True).iterator(chunk_size=5000)}


@register_check("progress: a snapshot for every succeeded delivery of a task in a project")
def progress_snapshots() -> Iterator[str]:
    snapshots = set(ProgressSnapshot.objects.values_list("event_id", "project_id"))
    live = _live_keys(Project)
    for event_id, _, payload in _succeeded("progress"):
        project = payload.get("project_id")
        if project and project in live and (event_id, uuid.UUID(project)) not in snapshots:
            yield f"event {event_id}: no progress snapshot for project {project}"


@register_check("story: exactly one segment per completed task whose delivery succeeded")
def story_segments() -> Iterator[str]:
    segments = Counter(
        str(s) for s in StorySegment.objects.filter(kind="task").values_list("subject_id", flat=True)
    )
    completed = {str(pk) for pk in Task.objects.filter(status="completed").values_list("pk", flat=True)}
    for event_id, _, payload in _succeeded("story", TASK_COMPLETED):
        task = payload.get("task_id")
        if task in completed and segments.get(task, 0) != 1:
            yield f"event {event_id}: task {task} has {segments.get(task, 0)} story segments"


@register_check(
    "notifications: one in-app notification per succeeded delivery about what still exists, "
    "at most one push per device"
)
def notifications_and_pushes() -> Iterator[str]:
    # A delete event notifies nobody, and a deleted subject takes its notifications with it
    # (or had none, when it was gone before the delivery ran): only notifying events whose
    # subject still exists must have one.
    notified = set(Notification.objects.values_list("event_id", flat=True))
    live = {model: _live_keys(model) for model, _ in SUBJECT.values()}
    for event_id, event_type, payload in _succeeded("notifications"):
        if event_type not in SUBJECT or event_id in notified:
            continue
        model, key = SUBJECT[event_type]
        if str(payload.get(key)) in live[model]:
            yield f"event {event_id} ({event_type}): no in-app notification"
    repeated = (
        PushReceipt.objects.values("notification_id", "device_id").annotate(n=Count("id")).filter(n__gt=1)
    )
    for row in repeated:
        yield f"notification {row['notification_id']} pushed {row['n']} times to device {row['device_id']}"


@register_check("memory: every completed task whose delivery succeeded is remembered (pgvector)")
def memories() -> Iterator[str]:
    from django.conf import settings

    if settings.MEMORY_STORE != "pgvector":
        return
    remembered = {str(pk) for pk in MemoryEntry.objects.values_list("task_id", flat=True)}
    completed = {str(pk) for pk in Task.objects.filter(status="completed").values_list("pk", flat=True)}
    for event_id, _, payload in _succeeded("memory", TASK_COMPLETED):
        task = payload.get("task_id")
        if task in completed and task not in remembered:
            yield f"event {event_id}: completed task {task} is not in memory"
