"""A project's or goal's new percent, and the milestone it crosses: the one place where
`project.completed` and `goal.reached` are published, for the one-by-one and the batch path.

The status change is what makes each fire once per transition (the row is locked by the
caller); dropping below 100 % again puts it back to active, so a second finish emits again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from outbox.api import publish
from tasks_app.models import Goal, Project

from ..events import GOAL_REACHED, PROJECT_COMPLETED
from .figures import HUNDRED

logger = logging.getLogger("workers.progress")


def set_project_percent(project: Project, percent: Decimal, now: datetime | None = None) -> None:
    """Set the percent (and `updated_at`, which bulk_update leaves alone) and cross a milestone."""
    project.progress_percent = percent
    if now is not None:
        project.updated_at = now
    if percent == HUNDRED and project.status == Project.Status.ACTIVE:
        project.status = Project.Status.COMPLETED
        publish(
            PROJECT_COMPLETED,
            project,
            {
                "project_id": str(project.pk),
                "user_id": project.owner_id,
                "goal_id": str(project.goal_id) if project.goal_id else None,
            },
        )
        logger.info("progress: project %s completed", project.pk)
    elif percent < HUNDRED and project.status == Project.Status.COMPLETED:
        project.status = Project.Status.ACTIVE


def set_goal_percent(goal: Goal, percent: Decimal, now: datetime | None = None) -> None:
    goal.progress_percent = percent
    if now is not None:
        goal.updated_at = now
    if percent == HUNDRED and goal.status == Goal.Status.ACTIVE:
        goal.status = Goal.Status.REACHED
        publish(GOAL_REACHED, goal, {"goal_id": str(goal.pk), "user_id": goal.owner_id})
        logger.info("progress: goal %s reached", goal.pk)
    elif percent < HUNDRED and goal.status == Goal.Status.REACHED:
        goal.status = Goal.Status.ACTIVE
