"""Recall: the query side of memory, for the story (related past tasks) and the API (search).

Only a store that is down (`StoreUnavailable`) makes memory "unavailable": the story is then
told without recalled tasks. Our own database being away is not that: it is raised, and the
story's delivery is retried.
"""

from __future__ import annotations

from typing import Any

from tasks_app.models import Task

from . import embedding
from .items import memory_text
from .stores import Hit, StoreUnavailable, get_store


class MemoryUnavailable(Exception):
    """Semantic memory cannot answer now; the story is composed without recalled tasks."""


def as_dict(hit: Hit) -> dict[str, Any]:
    """A hit as the story records it and the API answers it."""
    return {"task": hit.task_id, "title": hit.title, "score": hit.score}


def search(owner_id: int, query: str, k: int) -> list[Hit]:
    vector = embedding.embed([query])[0]
    return get_store().search(owner_id, vector, k)


def related_tasks(task: Task, k: int) -> list[dict[str, Any]]:
    """The owner's tasks completed before `task` and nearest to it in meaning (for the story composer)."""
    try:
        store = get_store()
        vector = store.vector_of(task.owner_id, str(task.pk))
        if vector is None:  # the story may run before memory has indexed this task
            vector = embedding.embed([memory_text(task)])[0]
        hits = store.search(task.owner_id, vector, k, exclude=str(task.pk), before=task.completed_at)
    except StoreUnavailable as exc:
        # Only a store that is down. Our own database being away (an OperationalError) is
        # not caught: the story is retried, not written without its memories.
        raise MemoryUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return [as_dict(h) for h in hits]
