"""Forgetting in the story: a deleted task's segment goes, and so does every mention of it in
the owner's other segments (recalls, and the text that names it); a deleted project's or
goal's chapter goes, and what named it is written again without it."""

from __future__ import annotations

import logging

from tasks_app.models import Project, Task

from ..models import StorySegment
from .context import chapter_context, task_context
from .writers import get_writer

logger = logging.getLogger(__name__)


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
