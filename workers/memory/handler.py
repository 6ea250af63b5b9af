"""The memory subscriber: completed tasks embedded into a vector store, searchable by meaning.

The subscriber writes from current state: whatever the event, a task that is
completed now is upserted (deterministic id: the task's), one that is not (reopened,
deleted) is removed. Upserts are idempotent, so repeats and replays change nothing.
When deliveries pile up, one message carries many of them and they are embedded in
one model call (the batch handler); one at a time otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from outbox.api import Event, RetryPolicy, subscriber
from tasks_app.events import TASK_COMPLETED, TASK_DELETED, TASK_PAYLOAD_VERSION, TASK_REOPENED
from tasks_app.models import Task

from ..queues import Queue
from .items import items_for
from .stores import get_store

logger = logging.getLogger(__name__)


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
        store.upsert(items_for(completed))
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
    task_name="workers.memory.index_task",
)
def index_task(event: Event) -> None:
    index_events([event])
