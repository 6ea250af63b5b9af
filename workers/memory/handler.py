"""The memory subscriber: completed tasks embedded into a vector store, searchable by meaning.

The subscriber writes from current state: whatever the event, a task that is
completed now is upserted (deterministic id: the task's), one that is not (reopened,
deleted) is removed. Upserts are idempotent, so repeats and replays change nothing.
When deliveries pile up, one message carries many of them and they are embedded in
one model call (the batch handler); one at a time otherwise.
A deleted project's tasks stay, without it: `project.deleted` names them, and they are
embedded again from their current state (their text named the project). The tasks are
locked while they are embedded, so a delete waits for the upsert to commit and its own
delivery then removes the row; an upsert that runs after a delete finds no task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from outbox.api import Event, RetryPolicy, subscriber
from tasks_app.events import (
    DELETE_PAYLOAD_VERSION,
    PROJECT_DELETED,
    TASK_COMPLETED,
    TASK_DELETED,
    TASK_PAYLOAD_VERSION,
    TASK_REOPENED,
)
from tasks_app.models import Task

from ..locks import hold_against_delete
from ..queues import Queue
from . import fresh
from .items import items_for
from .stores import get_store

logger = logging.getLogger(__name__)


def subjects(event: Event) -> list[tuple[int, str]]:
    """The (owner, task) pairs an event is about."""
    if event.type == PROJECT_DELETED:
        event.require("task_ids", "user_id", version=DELETE_PAYLOAD_VERSION)
        return [(int(event.payload["user_id"]), str(t)) for t in event.payload["task_ids"]]
    event.require("task_id", "user_id", version=TASK_PAYLOAD_VERSION)
    return [(int(event.payload["user_id"]), str(event.payload["task_id"]))]


def index_events(events: Sequence[Event]) -> None:
    pairs = {pair for e in events for pair in subjects(e)}
    task_ids = {task_id for _, task_id in pairs}
    # Whatever the event said, the task's state now decides: completed -> remembered.
    # Held against deletion until this delivery commits: a delete waits for the upsert, and
    # then its own delivery removes it.
    hold_against_delete(Task, task_ids)
    completed = list(
        Task.objects.filter(pk__in=task_ids, status=Task.Status.COMPLETED)
        .select_related("project")
        .prefetch_related("media")
        .order_by("pk")
    )
    store = get_store()
    if completed:
        store.upsert(items_for(completed, share=True))
    remembered = {str(t.pk) for t in completed}
    gone: dict[int, set[str]] = {}
    for owner_id, task_id in pairs:
        if task_id not in remembered:
            gone.setdefault(owner_id, set()).add(task_id)
    for owner_id, ids in gone.items():
        store.delete(owner_id, sorted(ids))
        fresh.forget(ids)  # and the vector the story may have kept of it
    logger.info(
        "memory: %d tasks indexed, %d removed (events %s)",
        len(completed),
        sum(len(ids) for ids in gone.values()),
        [e.id for e in events][:20],
    )


@subscriber(
    "memory",
    events=[TASK_COMPLETED, TASK_REOPENED, TASK_DELETED, PROJECT_DELETED],
    queue=Queue.MEMORY,
    retry=RetryPolicy(max_retries=6, backoff=2, backoff_max=300),
    batch_handler=index_events,
    task_name="workers.memory.index_task",
)
def index_task(event: Event) -> None:
    index_events([event])
