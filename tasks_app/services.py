"""The domain's write services: each change and its event are written in one transaction."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from outbox.api import publish

from . import events
from .models import Task

logger = logging.getLogger(__name__)


@transaction.atomic
def complete_task(task: Task, by: AbstractBaseUser) -> bool:
    """Mark `task` completed and record `task.completed`; False if it already was.

    The row is locked first, so two concurrent completions of one task write one event.
    """
    locked = Task.objects.select_for_update(of=("self",)).select_related("project").get(pk=task.pk)
    if locked.is_completed:
        _refresh(task, locked)
        return False
    locked.status = Task.Status.COMPLETED
    locked.completed_at = timezone.now()
    locked.save(update_fields=["status", "completed_at", "updated_at"])
    event = publish(
        events.TASK_COMPLETED, locked, events.task_payload(locked), version=events.TASK_PAYLOAD_VERSION
    )
    logger.info("task %s completed by user %s; event %s", locked.pk, by.pk, event.pk)
    _refresh(task, locked)
    return True


@transaction.atomic
def reopen_task(task: Task, status: str = Task.Status.TODO) -> bool:
    """Move a completed task back to `status` and record `task.reopened`; False if it was not completed."""
    locked = Task.objects.select_for_update(of=("self",)).select_related("project").get(pk=task.pk)
    if not locked.is_completed:
        return False
    locked.status = status
    locked.completed_at = None
    locked.save(update_fields=["status", "completed_at", "updated_at"])
    publish(events.TASK_REOPENED, locked, events.task_payload(locked), version=events.TASK_PAYLOAD_VERSION)
    _refresh(task, locked)
    return True


@transaction.atomic
def delete_task(task: Task) -> None:
    """Delete a task and record `task.deleted`, so derived data (progress, memory) follows."""
    payload = events.task_payload(task)
    publish(events.TASK_DELETED, task, payload, version=events.TASK_PAYLOAD_VERSION)
    task.delete()


def _refresh(target: Task, source: Task) -> None:
    target.status = source.status
    target.completed_at = source.completed_at
    target.updated_at = source.updated_at
