"""Story composition: one segment per completed task, and a chapter close per finished project or goal.

A segment draws on the task's media (in order), its project's progress, and the
owner's most related past tasks from semantic memory. If memory cannot answer,
the segment is written without them and says so in its metadata. The unique
(kind, subject) constraint makes a retry or a replay a no-op.

Deletes are forgotten: a deleted task's segment goes, and so does its recall from the
owner's other segments (their text is written again without it); a deleted project's or
goal's chapter goes, and the segments of the tasks it held are written again without its
title. The subject is locked while its segment is composed, so a delete waits for that
and its own delivery then finds the segment; a composition that runs after a delete finds
no subject and writes nothing.

Every delivery goes through the batch path first (workers.story.batch): the texts are written
before the claim, outside any transaction, and recorded set-based. `compose_story` here is the
one-by-one path: for chapters and deletes, for a task edited between the two steps, and for
a whole batch that raised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from outbox.api import Event, RetryPolicy, TransientError, subscriber
from tasks_app.events import (
    DELETE_PAYLOAD_VERSION,
    GOAL_DELETED,
    PROJECT_DELETED,
    TASK_COMPLETED,
    TASK_DELETED,
    TASK_PAYLOAD_VERSION,
)
from tasks_app.models import Goal, Project, Task

from ..events import GOAL_REACHED, MILESTONE_PAYLOAD_VERSION, PROJECT_COMPLETED
from ..locks import hold_against_delete
from ..memory.recall import MemoryUnavailable, related_tasks, related_tasks_many
from ..models import StorySegment
from ..queues import Queue
from . import batch, drafts
from .context import chapter_context, media_of, task_context
from .drafts import Draft
from .forget import forget_chapter, forget_task, rewrite_chapters, rewrite_task_segments
from .writers import get_writer

logger = logging.getLogger(__name__)

RECALL_K = 3


def draft_stories(events: Sequence[Event]) -> batch.Drafts:
    """The batch's `prepare`: its task segments written before the claim (see workers.story.batch)."""
    return batch.draft_stories(events, recall_many)


def recall_many(tasks: Sequence[Task]) -> dict[Any, list[dict[str, Any]] | MemoryUnavailable]:
    """The recalled memories of many tasks, by pk, in one batch (one vector query for the
    pgvector store), or why memory could not answer."""
    try:
        return dict(related_tasks_many(tasks, RECALL_K))
    except MemoryUnavailable as exc:
        logger.warning("story: memory unavailable for %d tasks, composing without it: %s", len(tasks), exc)
        return dict.fromkeys((t.pk for t in tasks), exc)


@subscriber(
    "story",
    events=[TASK_COMPLETED, PROJECT_COMPLETED, GOAL_REACHED, TASK_DELETED, PROJECT_DELETED, GOAL_DELETED],
    queue=Queue.STORY,
    retry=RetryPolicy(max_retries=6, backoff=5, backoff_max=600),
    prepare=draft_stories,
    batch_handler=batch.compose_stories,
    task_name="workers.story.compose_story",
)
def compose_story(event: Event) -> None:
    """One event (the one-by-one pass, and the fallback of a batch that raised)."""
    if event.type == TASK_COMPLETED:
        event.require("task_id", version=TASK_PAYLOAD_VERSION)
        compose_task_segment(event.payload["task_id"], event.id)
    elif event.type == TASK_DELETED:
        event.require("task_id", "user_id", version=TASK_PAYLOAD_VERSION)
        forget_task(event.payload["user_id"], event.payload["task_id"], event.id)
    elif event.type == PROJECT_DELETED:
        event.require("project_id", "user_id", "task_ids", version=DELETE_PAYLOAD_VERSION)
        forget_chapter(StorySegment.Kind.PROJECT, event.payload["project_id"], event.id)
        rewrite_task_segments(event.payload["task_ids"], event.id)
    elif event.type == GOAL_DELETED:
        event.require("goal_id", "user_id", "project_ids", version=DELETE_PAYLOAD_VERSION)
        forget_chapter(StorySegment.Kind.GOAL, event.payload["goal_id"], event.id)
        tasks = Task.objects.filter(project_id__in=event.payload["project_ids"]).values_list("pk", flat=True)
        rewrite_task_segments([str(t) for t in tasks], event.id)
        rewrite_chapters(event.payload["project_ids"], event.id)
    elif event.type == PROJECT_COMPLETED:
        event.require("project_id", version=MILESTONE_PAYLOAD_VERSION)
        compose_chapter(Project, StorySegment.Kind.PROJECT, event.payload["project_id"], event.id)
    else:
        event.require("goal_id", version=MILESTONE_PAYLOAD_VERSION)
        compose_chapter(Goal, StorySegment.Kind.GOAL, event.payload["goal_id"], event.id)


def compose_task_segment(task_id: str, event_id: int) -> StorySegment | None:
    # Written first, with no lock on the task: the writer may be an LLM taking seconds, and
    # holding the task's row that long would make the user's own edits wait behind it.
    draft = _draft(task_id, _task(task_id), event_id)
    if not isinstance(draft, Draft):
        return draft
    # Then recorded with the task, and the tasks it recalls, held against deletion until this
    # delivery commits: a delete waits, and its task.deleted delivery then finds the segment,
    # or the recall, to remove. A task gone or edited meanwhile, or a recall deleted (its own
    # forget already ran), is looked at again; the new draft's recalls are held in turn.
    task = _task(task_id, lock=True, recalled=draft.context.recalled)
    for _ in range(3):
        if task is not None and task.is_completed and draft.still_fits(task) and _recalls_there(draft):
            break
        draft = _draft(task_id, task, event_id)
        if not isinstance(draft, Draft):
            return draft
        task = _task(task_id, lock=True, recalled=draft.context.recalled)
    else:  # deletes kept racing this draft: a transient failure, retried with backoff
        raise TransientError(
            f"story: task {task_id}'s recalled tasks kept being deleted while it was written"
        )
    assert task is not None
    return _save(
        task.owner_id,
        StorySegment.Kind.TASK,
        task.pk,
        event_id,
        task.title,
        draft.text,
        draft.writer,
        draft.context.media,
        draft.context.recalled,
        draft.metadata,
    )


def _task(task_id: str, lock: bool = False, recalled: Sequence[dict[str, Any]] = ()) -> Task | None:
    if lock:
        hold_against_delete(Task, [task_id, *(r["task"] for r in recalled)])
    return Task.objects.select_related("project__goal").filter(pk=task_id).first()


def _recalls_there(draft: Draft) -> bool:
    wanted = {r["task"] for r in draft.context.recalled}
    return len(wanted) == Task.objects.filter(pk__in=wanted).count()


def _draft(task_id: str, task: Task | None, event_id: int) -> Draft | StorySegment | None:
    """The segment's text and parts, or the segment already there, or None for a task gone."""
    if task is None or not task.is_completed:
        logger.info("story: task %s is gone or no longer completed; event %s skipped", task_id, event_id)
        return None
    existing = StorySegment.objects.filter(kind=StorySegment.Kind.TASK, subject_id=task.pk).first()
    if existing:
        return existing
    try:
        recalled: list[dict[str, Any]] | MemoryUnavailable = related_tasks(task, RECALL_K)
    except MemoryUnavailable as exc:
        recalled = exc
        logger.warning("story: memory unavailable for task %s, composing without it: %s", task.pk, exc)
    context = task_context(task, media_of(task), [] if isinstance(recalled, MemoryUnavailable) else recalled)
    return drafts.write(get_writer(), context, {"event_id": event_id, **drafts.memory_metadata(recalled)})


def compose_chapter(
    model: type[Project] | type[Goal], kind: str, subject_id: str, event_id: int
) -> StorySegment | None:
    # As for a task: written first (an LLM writer takes seconds); then recorded with the subject
    # held against deletion, written again if it changed meanwhile.
    subject = model.objects.filter(pk=subject_id).first()
    if subject is None:
        return None
    if existing := StorySegment.objects.filter(kind=kind, subject_id=subject.pk).first():
        return existing
    writer = get_writer()
    context = chapter_context(subject, kind)
    text = writer.write(context)
    hold_against_delete(model, [subject_id])
    subject = model.objects.filter(pk=subject_id).first()
    if subject is None:
        return None
    if (now := chapter_context(subject, kind)) != context:
        text = writer.write(now)
    return _save(
        subject.owner_id,
        kind,
        subject.pk,
        event_id,
        f"Chapter closed: {subject.title}",
        text,
        writer.name,
        [],
        [],
        {"event_id": event_id},
    )


def _save(
    owner_id: int,
    kind: str,
    subject_id: Any,
    event_id: int,
    title: str,
    text: str,
    writer: str,
    media: list[dict[str, str]],
    recalled: list[dict[str, Any]],
    metadata: dict[str, Any],
) -> StorySegment:
    segment, created = StorySegment.objects.get_or_create(
        kind=kind,
        subject_id=subject_id,
        defaults={
            "owner_id": owner_id,
            "event_id": event_id,
            "title": title[:300],
            "text": text,
            "media": media,
            "recalled": recalled,
            "writer": writer,
            "metadata": metadata,
        },
    )
    if created:
        logger.info(
            "story: %s segment %s for %s (event %s, writer %s)",
            kind,
            segment.pk,
            subject_id,
            event_id,
            writer,
        )
    return segment
