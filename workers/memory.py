"""Semantic memory: completed tasks embedded into a vector store, searchable by meaning.

The subscriber writes from current state: whatever the event, a task that is
completed now is upserted (deterministic id: the task's), one that is not (reopened,
deleted) is removed. Upserts are idempotent, so repeats and replays change nothing.
When deliveries pile up, one message carries many of them and they are embedded in
one model call (the batch handler); one at a time otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError, transaction

from outbox.api import Event, RetryPolicy, is_infrastructure_fault, subscriber
from tasks_app.events import TASK_COMPLETED, TASK_DELETED, TASK_PAYLOAD_VERSION, TASK_REOPENED
from tasks_app.models import Task

from . import embedding
from .queues import Queue
from .vectorstores import Hit, MemoryItem, StoreUnavailable, get_store

logger = logging.getLogger(__name__)


class MemoryUnavailable(Exception):
    """Semantic memory cannot answer now; the story is composed without recalled tasks."""


def memory_text(task: Task) -> str:
    """What is embedded: the title, description, media captions and the project's title."""
    parts = [task.title, task.description]
    parts += [m.caption for m in task.media.all() if m.caption]
    if task.project:
        parts.append(f"Project: {task.project.title}")
    return "\n".join(p for p in parts if p)


def index_events(events: Sequence[Event]) -> None:
    for event in events:
        event.require("task_id", "user_id", version=TASK_PAYLOAD_VERSION)
    task_ids = {e.payload["task_id"] for e in events}
    # Whatever the event said, the task's state now decides: completed -> remembered.
    completed = list(
        Task.objects.filter(pk__in=task_ids, status=Task.Status.COMPLETED)
        .select_related("project")
        .prefetch_related("media")
    )
    store = get_store()
    if completed:
        texts = [memory_text(t) for t in completed]
        vectors = embedding.embed(texts)
        store.upsert(
            [
                MemoryItem(str(t.pk), t.owner_id, t.title, text, v, completed_at=t.completed_at)
                for t, text, v in zip(completed, texts, vectors, strict=True)
            ]
        )
    remembered = {str(t.pk) for t in completed}
    gone: dict[int, set[str]] = {}
    for e in events:
        if e.payload["task_id"] not in remembered:
            gone.setdefault(int(e.payload["user_id"]), set()).add(e.payload["task_id"])
    for owner_id, ids in gone.items():
        store.delete(owner_id, sorted(ids))
    logger.info(
        "memory: %d tasks indexed, %d removed (events %s)",
        len(completed),
        sum(len(ids) for ids in gone.values()),
        [e.id for e in events][:20],
    )


@subscriber(
    "memory",
    events=[TASK_COMPLETED, TASK_REOPENED, TASK_DELETED],
    queue=Queue.MEMORY,
    retry=RetryPolicy(max_retries=6, backoff=2, backoff_max=300),
    batch_handler=index_events,
)
def index_task(event: Event) -> None:
    index_events([event])


def search(owner_id: int, query: str, k: int) -> list[Hit]:
    vector = embedding.embed([query])[0]
    return get_store().search(owner_id, vector, k)


def related_tasks(task: Task, k: int) -> list[dict[str, Any]]:
    """The owner's tasks completed before `task` and nearest to it in meaning (for the story composer)."""
    try:
        # A savepoint: a failing store must not break the caller's transaction.
        with transaction.atomic():
            store = get_store()
            vector = store.vector_of(task.owner_id, str(task.pk))
            if vector is None:  # the story may run before memory has indexed this task
                vector = embedding.embed([memory_text(task)])[0]
            hits = store.search(task.owner_id, vector, k, exclude=str(task.pk), before=task.completed_at)
    except (StoreUnavailable, DatabaseError) as exc:
        if is_infrastructure_fault(exc):
            # Our own database is away: the story is retried, not written without its memories.
            raise
        raise MemoryUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return [{"task": h.task_id, "title": h.title, "score": h.score} for h in hits]
