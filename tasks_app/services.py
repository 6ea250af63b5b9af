"""The domain's write services: each change and its event are written in one transaction."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from outbox.api import forget_history, publish

from . import events
from .models import Goal, Project, Task

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
    # Its history goes from the event log; the task.deleted event, ids only, is what stays.
    forget_history(task, task.owner_id)
    publish(events.TASK_DELETED, task, payload, version=events.TASK_PAYLOAD_VERSION)
    task.delete()
    logger.info("task %s of user %s deleted", payload["task_id"], payload["user_id"])


@transaction.atomic
def delete_project(project: Project) -> None:
    """Delete a project and record `project.deleted`; its tasks stay, without a project.

    The row is locked first: a task added to the project meanwhile (its insert locks the
    project's key) waits, so the payload names every task that loses the project.
    """
    locked = Project.objects.select_for_update().get(pk=project.pk)
    task_ids = list(Task.objects.filter(project=locked).order_by("pk").values_list("pk", flat=True))
    payload = events.project_deleted_payload(locked, task_ids)
    forget_history(locked, locked.owner_id)
    publish(events.PROJECT_DELETED, locked, payload, version=events.DELETE_PAYLOAD_VERSION)
    locked.delete()
    logger.info(
        "project %s of user %s deleted (%d tasks kept)", payload["project_id"], locked.owner_id, len(task_ids)
    )


@transaction.atomic
def delete_goal(goal: Goal) -> None:
    """Delete a goal and record `goal.deleted`; its projects stay, without a goal."""
    locked = Goal.objects.select_for_update().get(pk=goal.pk)
    project_ids = list(Project.objects.filter(goal=locked).order_by("pk").values_list("pk", flat=True))
    payload = events.goal_deleted_payload(locked, project_ids)
    forget_history(locked, locked.owner_id)
    publish(events.GOAL_DELETED, locked, payload, version=events.DELETE_PAYLOAD_VERSION)
    locked.delete()
    logger.info(
        "goal %s of user %s deleted (%d projects kept)", payload["goal_id"], locked.owner_id, len(project_ids)
    )


def _refresh(target: Task, source: Task) -> None:
    target.status = source.status
    target.completed_at = source.completed_at
    target.updated_at = source.updated_at
