"""The events the domain emits, and their payloads: small JSON dicts of ids, versioned."""

from typing import Any

from .models import Task

TASK_COMPLETED = "task.completed"
TASK_REOPENED = "task.reopened"
TASK_DELETED = "task.deleted"

# Events whose payload is `task_payload()`; subscribers may rely on its keys.
TASK_EVENTS = (TASK_COMPLETED, TASK_REOPENED, TASK_DELETED)
TASK_PAYLOAD_VERSION = 1


def task_payload(task: Task) -> dict[str, Any]:
    return {
        "task_id": str(task.pk),
        "user_id": task.owner_id,
        "project_id": str(task.project_id) if task.project_id else None,
        "goal_id": str(task.project.goal_id) if task.project_id and task.project.goal_id else None,
        "completed_at": task.completed_at.isoformat() if task.completed_at else None,
    }
