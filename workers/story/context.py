"""What the story's writers are told about a task or a finished project or goal."""

from __future__ import annotations

from typing import Any

from tasks_app.models import Goal, Project, Task

from ..progress.figures import project_figures
from .writers import StoryContext


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
