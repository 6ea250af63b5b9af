"""What the story composer asks of semantic memory: the user's past tasks most related to one."""

from __future__ import annotations

from typing import Any

from tasks_app.models import Task


class MemoryUnavailable(Exception):
    """Semantic memory cannot answer now; the story is composed without recalled tasks."""


def related_tasks(task: Task, k: int = 3) -> list[dict[str, Any]]:
    """The owner's other completed tasks nearest in meaning to `task`, best first."""
    from . import memory  # the memory subscriber owns the vectors and the search

    return memory.related_tasks(task, k)
