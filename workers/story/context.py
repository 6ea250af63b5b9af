"""What the story's writers are told about a task or a finished project or goal."""

from __future__ import annotations

from typing import Any

from tasks_app.models import Goal, Project, Task

from ..progress.figures import ProjectFigures, project_figures
from .writers import StoryContext


def task_context(task: Task, media: list[dict[str, str]], recalled: list[dict[str, Any]]) -> StoryContext:
    # The project as it stood when this task was done, not after everything since.
    figures = project_figures(task.project, as_of=task.completed_at) if task.project else None
    return task_context_with(task, media, recalled, figures)


def task_context_with(
    task: Task, media: list[dict[str, str]], recalled: list[dict[str, Any]], figures: ProjectFigures | None
) -> StoryContext:
    """task_context() with the project's figures already computed (the batch reads them for all
    its tasks at once: `figures_at_completion`)."""
    project = task.project
    return StoryContext(
        kind="task",
        subject_id=str(task.pk),
        title=task.title,
        description=task.description,
        project_title=project.title if project else None,
        goal_title=project.goal.title if project and project.goal else None,
        percent=figures.percent if project and figures else None,
        media=media,
        recalled=recalled,
    )


def media_of(task: Task) -> list[dict[str, str]]:
    """The task's media as a segment keeps them, in order (prefetched or not)."""
    return [{"kind": m.kind, "url": m.url, "caption": m.caption} for m in task.media.all()]


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
