"""The progress subscriber: recompute a project's and its goal's progress on each task event.

Everything is recomputed from the rows (never incremented), so repeats and
out-of-order deliveries converge on the same figures. A snapshot records the
project as of its event's completion time (tasks completed by then), so the
history reads as it happened even when the worker runs late; the project's and
goal's current percent, and the milestones, follow the current state. When a project reaches 100 %
it emits `project.completed`, when a goal does `goal.reached`, through the outbox in
the same transaction as the snapshot; the status change they ride on is what makes
each fire once per transition. A project or goal that drops below 100 % again (a
task reopened or added) goes back to active, and emits again when it finishes
again: a second finish is a real event for the story and the notifications.
The work is `batch.update_progress_many`, for one event or a message's many (one recompute
per project, goal and owner per batch); this module declares the subscriber.
"""

from __future__ import annotations

from outbox.api import Event, RetryPolicy, subscriber
from tasks_app.events import (
    PROJECT_DELETED,
    TASK_COMPLETED,
    TASK_DELETED,
    TASK_REOPENED,
)

from ..queues import Queue
from .batch import update_progress_many


@subscriber(
    "progress",
    events=[TASK_COMPLETED, TASK_REOPENED, TASK_DELETED, PROJECT_DELETED],
    queue=Queue.PROGRESS,
    retry=RetryPolicy(max_retries=5, backoff=1, backoff_max=60),
    batch_handler=update_progress_many,
    task_name="workers.progress.update_progress",
)
def update_progress(event: Event) -> None:
    """One event: a batch of one (the one-by-one pass, and the fallback of a batch that raised)."""
    update_progress_many([event])
