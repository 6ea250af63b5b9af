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
"""

from __future__ import annotations

import logging
from typing import Any

from outbox.api import Event, RetryPolicy, subscriber
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
from ..memory.recall import MemoryUnavailable, related_tasks
from ..models import StorySegment
from ..progress.figures import project_figures
from ..queues import Queue
from .writers import StoryContext, get_writer

logger = logging.getLogger(__name__)

RECALL_K = 3


@subscriber(
    "story",
    events=[TASK_COMPLETED, PROJECT_COMPLETED, GOAL_REACHED, TASK_DELETED, PROJECT_DELETED, GOAL_DELETED],
    queue=Queue.STORY,
    retry=RetryPolicy(max_retries=6, backoff=5, backoff_max=600),
    task_name="workers.story.compose_story",
)
def compose_story(event: Event) -> None:
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
    # Locked (no key: media may still be added) until this delivery commits: a delete of the
    # task waits, and its task.deleted delivery then finds the segment to remove.
    task = (
        Task.objects.select_for_update(of=("self",), no_key=True)
        .select_related("project__goal")
        .filter(pk=task_id)
        .first()
    )
    if task is None or not task.is_completed:
        logger.info("story: task %s is gone or no longer completed; event %s skipped", task_id, event_id)
        return None
    existing = StorySegment.objects.filter(kind=StorySegment.Kind.TASK, subject_id=task.pk).first()
    if existing:
        return existing
    media = [{"kind": m.kind, "url": m.url, "caption": m.caption} for m in task.media.all()]
    metadata: dict[str, Any] = {"event_id": event_id}
    try:
        recalled = related_tasks(task, RECALL_K)
        metadata["memory"] = "ok"
    except MemoryUnavailable as exc:
        recalled = []
        metadata["memory"] = f"unavailable: {exc}"
        logger.warning("story: memory unavailable for task %s, composing without it: %s", task.pk, exc)
    context = task_context(task, media, recalled)
    writer = get_writer()
    return _save(
        task.owner_id,
        StorySegment.Kind.TASK,
        task.pk,
        event_id,
        task.title,
        writer.write(context),
        writer.name,
        media,
        recalled,
        metadata,
    )


def task_context(task: Task, media: list[dict[str, str]], recalled: list[dict[str, Any]]) -> StoryContext:
    project = task.project
    return StoryContext(
        kind="task",
        subject_id=str(task.pk),
        title=task.title,
        description=task.description,
        project_title=project.title if project else None,
        goal_title=project.goal.title if project and project.goal else None,
        # The project as it stood when this task was done, not after everything since.
        percent=project_figures(project, as_of=task.completed_at).percent if project else None,
        media=media,
        recalled=recalled,
    )


def forget_task(owner_id: int, task_id: str, event_id: int) -> None:
    """Remove the deleted task's segment, and its recall from the owner's other segments."""
    deleted, _ = StorySegment.objects.filter(kind=StorySegment.Kind.TASK, subject_id=task_id).delete()
    recalling = StorySegment.objects.select_for_update().filter(
        owner_id=owner_id, recalled__contains=[{"task": task_id}]
    )
    rewritten = 0
    for segment in recalling:
        segment.recalled = [r for r in segment.recalled if r.get("task") != task_id]
        rewrite(segment)
        rewritten += 1
    logger.info(
        "story: task %s forgotten: %d segment removed, %d recalls removed (event %s)",
        task_id,
        deleted,
        rewritten,
        event_id,
    )


def forget_chapter(kind: str, subject_id: str, event_id: int) -> None:
    deleted, _ = StorySegment.objects.filter(kind=kind, subject_id=subject_id).delete()
    logger.info("story: %s %s forgotten: %d segment removed (event %s)", kind, subject_id, deleted, event_id)


def rewrite_task_segments(task_ids: list[str], event_id: int) -> None:
    """Write the segments of these tasks again from their current state (a project or goal they
    named is gone)."""
    segments = StorySegment.objects.select_for_update().filter(
        kind=StorySegment.Kind.TASK, subject_id__in=task_ids
    )
    n = 0
    for segment in segments:
        rewrite(segment)
        n += 1
    logger.info("story: %d task segments written again (event %s)", n, event_id)


def rewrite_chapters(project_ids: list[str], event_id: int) -> None:
    """Write these projects' chapter closes again without the goal they named (it is gone)."""
    segments = StorySegment.objects.select_for_update().filter(
        kind=StorySegment.Kind.PROJECT, subject_id__in=project_ids
    )
    for segment in segments:
        project = Project.objects.select_related("goal").filter(pk=segment.subject_id).first()
        if project is None:
            continue
        writer = get_writer()
        segment.text = writer.write(chapter_context(project, StorySegment.Kind.PROJECT))
        segment.writer = writer.name
        segment.save(update_fields=["text", "writer"])
        logger.info("story: chapter of project %s written again (event %s)", project.pk, event_id)


def rewrite(segment: StorySegment) -> None:
    """Write a task segment's text again from its task's current state and its stored media and
    recalls (memory is not asked again: the recalls it keeps are the ones the reader saw)."""
    task = Task.objects.select_related("project__goal").filter(pk=segment.subject_id).first()
    if task is None:  # its own task.deleted delivery removes it
        segment.save(update_fields=["recalled"])
        return
    writer = get_writer()
    segment.text = writer.write(task_context(task, segment.media, segment.recalled))
    segment.writer = writer.name
    segment.save(update_fields=["recalled", "text", "writer"])


def compose_chapter(
    model: type[Project] | type[Goal], kind: str, subject_id: str, event_id: int
) -> StorySegment | None:
    subject = model.objects.select_for_update().filter(pk=subject_id).first()
    if subject is None:
        return None
    if existing := StorySegment.objects.filter(kind=kind, subject_id=subject.pk).first():
        return existing
    context = chapter_context(subject, kind)
    writer = get_writer()
    title = f"Chapter closed: {subject.title}"
    return _save(
        subject.owner_id,
        kind,
        subject.pk,
        event_id,
        title,
        writer.write(context),
        writer.name,
        [],
        [],
        {"event_id": event_id},
    )


def chapter_context(subject: Project | Goal, kind: str) -> StoryContext:
    goal = getattr(subject, "goal", None)
    tasks_done = (
        subject.tasks.filter(status=Task.Status.COMPLETED).count() if isinstance(subject, Project) else None
    )
    return StoryContext(
        kind=kind,
        subject_id=str(subject.pk),
        title=subject.title,
        goal_title=goal.title if goal else None,
        tasks_done=tasks_done,
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
