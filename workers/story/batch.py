"""The story's set-based path: a batch of task.completed events in a constant number of queries.

Two steps, as the delivery wrapper runs a subscriber with `prepare` (outbox.delivery._run_batch):

- `draft_stories`, before the deliveries are claimed and with no transaction open: the tasks
  (with project, goal and media), the segments already written, the projects' figures as of
  each completion and the recalled memories are read for the whole batch, and each task's text
  is written. An LLM writer takes seconds per task: here it holds no row lock, no delivery and
  no connection idle in a transaction.
- `compose_stories`, in the delivery's transaction: the tasks are held against deletion and
  read again; each draft whose task still reads as it was written about is recorded, all in one
  INSERT that ignores the (kind, subject) constraint, so a replay or a race adds nothing.

A task edited meanwhile, and every event that is not a readable task.completed (chapters,
deletes: rare), is left to the one-by-one handler. A task whose text the writer failed to write
has its events fail with that error (retried with backoff, or dead), without asking the writer
again: the delivery wrapper records it as it would one by one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from outbox.api import Event, PermanentError, TransientError
from tasks_app.events import TASK_COMPLETED, TASK_PAYLOAD_VERSION
from tasks_app.models import Task

from ..locks import hold_against_delete
from ..memory.recall import MemoryUnavailable
from ..models import StorySegment
from ..progress.figures import figures_at_completion
from . import drafts
from .context import media_of, task_context_with
from .drafts import Draft
from .writers import get_writer

logger = logging.getLogger(__name__)

# The recalled memories of each task, by pk, or why memory could not answer (handler.recall_many).
Recall = Callable[[Sequence[Task]], dict[Any, "list[dict[str, Any]] | MemoryUnavailable"]]


@dataclass
class Drafts:
    """What `draft_stories` prepared, by task id: a Draft, or None when there is nothing to write
    (the task is gone or no longer completed, or its segment is already there); and the tasks
    whose text the writer failed to write, with its error."""

    by_task: dict[str, Draft | None] = field(default_factory=dict)
    failures: dict[str, Exception] = field(default_factory=dict)


def completed_task_id(event: Event) -> str | None:
    """The task a readable task.completed event names; None for any other event, and for a payload
    the handler cannot read (that event then fails alone, in the one-by-one pass)."""
    if event.type != TASK_COMPLETED:
        return None
    try:
        event.require("task_id", version=TASK_PAYLOAD_VERSION)
        return str(uuid.UUID(str(event.payload["task_id"])))
    except (PermanentError, ValueError):
        return None


def draft_stories(events: Sequence[Event], recall: Recall) -> Drafts:
    """Write the batch's task segments, before the claim (see the module's docstring)."""
    task_ids = {tid for e in events if (tid := completed_task_id(e))}
    if not task_ids:
        return Drafts()
    tasks = list(
        Task.objects.filter(pk__in=task_ids)
        .select_related("project__goal")
        .prefetch_related("media")
        .order_by("pk")
    )
    written = {
        str(s)
        for s in StorySegment.objects.filter(
            kind=StorySegment.Kind.TASK, subject_id__in=task_ids
        ).values_list("subject_id", flat=True)
    }
    todo = [t for t in tasks if t.is_completed and str(t.pk) not in written]
    prepared = Drafts(by_task=dict.fromkeys(task_ids))
    if not todo:
        return prepared
    figures = figures_at_completion(todo)
    recalled = recall(todo)
    writer = get_writer()
    unwell: TransientError | None = None
    for task in todo:
        tid = str(task.pk)
        if unwell is not None:
            # The writer's server is unwell (a timeout, a 5xx): asking it again for every task would
            # hold the batch for minutes. The rest are retried with backoff, as the first is.
            prepared.failures[tid] = TransientError(f"story writer failed earlier in this batch: {unwell}")
            continue
        memory = recalled[task.pk]
        context = task_context_with(
            task,
            media_of(task),
            [] if isinstance(memory, MemoryUnavailable) else memory,
            figures.get(task.pk),
        )
        try:
            prepared.by_task[tid] = drafts.write(writer, context, drafts.memory_metadata(memory))
        except Exception as exc:  # noqa: BLE001 - this task's events fail with it, alone
            prepared.failures[tid] = exc
            if isinstance(exc, TransientError):
                unwell = exc
    return prepared


def compose_stories(events: Sequence[Event], prepared: Drafts) -> dict[int, Exception | None]:
    """Record the drafts that still fit, in the delivery's transaction; returns the events left to
    the one-by-one handler (None) and those that failed, with the writer's error."""
    left: list[int] = []
    failed: dict[int, Exception] = {}
    events_of: dict[str, list[Event]] = {}
    for event in events:
        tid = completed_task_id(event)
        if tid is None or tid not in prepared.by_task:  # chapters, deletes, unreadable, not prepared
            left.append(event.id)
        elif tid in prepared.failures:
            failed[event.id] = prepared.failures[tid]
        else:
            events_of.setdefault(tid, []).append(event)
    drafted = sorted(tid for tid in events_of if prepared.by_task[tid] is not None)
    tasks: dict[str, Task] = {}
    recalled = {r["task"] for tid in drafted for r in prepared.by_task[tid].context.recalled}  # type: ignore[union-attr]
    if drafted:
        # Held until this delivery commits, with the tasks each draft recalls: a delete waits,
        # and its task.deleted delivery then finds the segment, or the recall, to remove.
        # Edits do not wait (FOR KEY SHARE).
        hold_against_delete(Task, {*drafted, *recalled})
        tasks = {str(t.pk): t for t in Task.objects.filter(pk__in=drafted).select_related("project__goal")}
    # A recalled task deleted since its draft was written: that story forgot it already.
    recalled_there = {str(pk) for pk in Task.objects.filter(pk__in=recalled).values_list("pk", flat=True)}
    figures = figures_at_completion([t for t in tasks.values() if t.is_completed])
    segments: list[StorySegment] = []
    for tid in drafted:
        draft, task, first = prepared.by_task[tid], tasks.get(tid), events_of[tid][0]
        assert draft is not None
        if task is None or not task.is_completed:
            logger.info("story: task %s is gone or no longer completed; event %s skipped", tid, first.id)
            continue
        now = task_context_with(task, draft.context.media, draft.context.recalled, figures.get(task.pk))
        gone = any(r["task"] not in recalled_there for r in draft.context.recalled)
        if now != draft.context or gone:  # edited, or a recall deleted, since: written again, one by one
            left.extend(e.id for e in events_of[tid])
            continue
        segments.append(
            StorySegment(
                owner_id=task.owner_id,
                kind=StorySegment.Kind.TASK,
                subject_id=task.pk,
                event_id=first.id,
                title=task.title[:300],
                text=draft.text,
                media=draft.context.media,
                recalled=draft.context.recalled,
                writer=draft.writer,
                metadata={"event_id": first.id, **draft.metadata},
            )
        )
    # A segment written meanwhile (another worker, a replay) wins; this one is dropped.
    StorySegment.objects.bulk_create(segments, ignore_conflicts=True)
    logger.info(
        "story: %d task segments recorded, %d events left to run one by one, %d failed (events %s)",
        len(segments),
        len(left),
        len(failed),
        [s.event_id for s in segments][:20],
    )
    return {**dict.fromkeys(left), **failed}
