"""The events the domain emits, and their payloads: small JSON dicts of ids, versioned."""

from collections.abc import Sequence
from typing import Any

from .models import Goal, Project, Task

TASK_COMPLETED = "task.completed"
TASK_REOPENED = "task.reopened"
TASK_DELETED = "task.deleted"
PROJECT_DELETED = "project.deleted"
GOAL_DELETED = "goal.deleted"

# Events whose payload is `task_payload()`; subscribers may rely on its keys.
TASK_EVENTS = (TASK_COMPLETED, TASK_REOPENED, TASK_DELETED)
TASK_PAYLOAD_VERSION = 1
DELETE_PAYLOAD_VERSION = 1


def task_payload(task: Task) -> dict[str, Any]:
    return {
        "task_id": str(task.pk),
        "user_id": task.owner_id,
        "project_id": str(task.project_id) if task.project_id else None,
        "goal_id": str(task.project.goal_id) if task.project_id and task.project.goal_id else None,
        "completed_at": task.completed_at.isoformat() if task.completed_at else None,
    }


def project_deleted_payload(project: Project, task_ids: Sequence[object]) -> dict[str, Any]:
    """The project, and the tasks it held: they outlive it (their project is set to null), so
    subscribers that mention the project beside a task (story, memory) can say it no more."""
    return {
        "project_id": str(project.pk),
        "user_id": project.owner_id,
        "goal_id": str(project.goal_id) if project.goal_id else None,
        "task_ids": [str(t) for t in task_ids],
    }


def goal_deleted_payload(goal: Goal, project_ids: Sequence[object]) -> dict[str, Any]:
    """The goal, and the projects it held: they outlive it (their goal is set to null)."""
    return {
        "goal_id": str(goal.pk),
        "user_id": goal.owner_id,
        "project_ids": [str(p) for p in project_ids],
    }
