"""Story composition: one segment per completed task, and a chapter close per finished project or goal.

A segment draws on the task's media (in order), its project's progress, and the
owner's most related past tasks from semantic memory. If memory cannot answer,
the segment is written without them and says so in its metadata. The unique
(kind, subject) constraint makes a retry or a replay a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

from outbox.api import Event, RetryPolicy, subscriber
from tasks_app.events import TASK_COMPLETED, TASK_PAYLOAD_VERSION
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
    events=[TASK_COMPLETED, PROJECT_COMPLETED, GOAL_REACHED],
    queue=Queue.STORY,
    retry=RetryPolicy(max_retries=6, backoff=5, backoff_max=600),
    task_name="workers.story.compose_story",
)
def compose_story(event: Event) -> None:
    if event.type == TASK_COMPLETED:
        event.require("task_id", version=TASK_PAYLOAD_VERSION)
        compose_task_segment(event.payload["task_id"], event.id)
    elif event.type == PROJECT_COMPLETED:
        event.require("project_id", version=MILESTONE_PAYLOAD_VERSION)
        compose_chapter(Project, StorySegment.Kind.PROJECT, event.payload["project_id"], event.id)
    else:
        event.require("goal_id", version=MILESTONE_PAYLOAD_VERSION)
        compose_chapter(Goal, StorySegment.Kind.GOAL, event.payload["goal_id"], event.id)


def compose_task_segment(task_id: str, event_id: int) -> StorySegment | None:
    task = Task.objects.select_related("project__goal").filter(pk=task_id).first()
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
    project = task.project
    context = StoryContext(
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


def compose_chapter(
    model: type[Project] | type[Goal], kind: str, subject_id: str, event_id: int
) -> StorySegment | None:
    subject = model.objects.filter(pk=subject_id).first()
    if subject is None:
        return None
    if existing := StorySegment.objects.filter(kind=kind, subject_id=subject.pk).first():
        return existing
    goal = getattr(subject, "goal", None)
    tasks_done = (
        subject.tasks.filter(status=Task.Status.COMPLETED).count() if isinstance(subject, Project) else None
    )
    context = StoryContext(
        kind=kind,
        subject_id=str(subject.pk),
        title=subject.title,
        goal_title=goal.title if goal else None,
        tasks_done=tasks_done,
    )
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
