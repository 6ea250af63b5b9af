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
A message's deliveries (and those waiting with them) go through `batch.update_progress_many`,
which gives the same figures with one recompute per project, goal and owner per batch.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.utils.dateparse import parse_datetime

from outbox.api import Event, RetryPolicy, subscriber
from tasks_app.events import (
    DELETE_PAYLOAD_VERSION,
    PROJECT_DELETED,
    TASK_COMPLETED,
    TASK_DELETED,
    TASK_PAYLOAD_VERSION,
    TASK_REOPENED,
)
from tasks_app.models import Goal, Project

from ..models import ProgressSnapshot
from ..queues import Queue
from .batch import update_progress_many
from .figures import estimated_finish, figures_from, goal_percent, user_figures
from .milestones import set_goal_percent, set_project_percent

logger = logging.getLogger(__name__)


@subscriber(
    "progress",
    events=[TASK_COMPLETED, TASK_REOPENED, TASK_DELETED, PROJECT_DELETED],
    queue=Queue.PROGRESS,
    retry=RetryPolicy(max_retries=5, backoff=1, backoff_max=60),
    batch_handler=update_progress_many,
    task_name="workers.progress.update_progress",
)
def update_progress(event: Event) -> None:
    if event.type == PROJECT_DELETED:
        # The goal's percent is the mean of its live projects: one fewer, recompute it.
        event.require("user_id", "goal_id", version=DELETE_PAYLOAD_VERSION)
        if event.payload["goal_id"]:
            _update_goal(event.payload["goal_id"], event.id)
        return
    event.require("user_id", version=TASK_PAYLOAD_VERSION)
    project_id = event.payload.get("project_id")
    if not project_id:
        return  # a task outside any project moves no project figures
    # The lock serialises concurrent recomputes of one project, so exactly one of
    # them sees the transition to 100 % and emits project.completed.
    project = Project.objects.select_for_update().filter(pk=project_id).first()
    if project is None:
        logger.info("progress: project %s is gone; event %s skipped", project_id, event.id)
        return
    completed_at = event.payload.get("completed_at")
    record_progress(
        project, event.id, as_of=parse_datetime(completed_at) if completed_at else event.created_at
    )


def record_progress(project: Project, event_id: int, as_of: datetime | None = None) -> ProgressSnapshot:
    """Current figures on the project and goal (milestones follow them); the snapshot, as of the event."""
    rows = list(project.tasks.values_list("completed_at", "estimate"))
    figures = figures_from(rows)
    user = user_figures(project.owner_id)
    set_project_percent(project, figures.percent)
    project.save(update_fields=["progress_percent", "status", "updated_at"])

    goal_pct = _update_goal(project.goal_id, event_id) if project.goal_id else None
    then = figures_from(rows, as_of) if as_of else figures
    snapshot, _ = ProgressSnapshot.objects.update_or_create(
        project=project,
        event_id=event_id,
        defaults={
            "percent": then.percent,
            "tasks_done": then.tasks_done,
            "tasks_total": then.tasks_total,
            "goal_percent": goal_pct,
            "streak_days": user.streak_days,
            "pace_per_week": user.pace_per_week,
            "estimated_finish": estimated_finish(project, figures, user, user.today),
        },
    )
    return snapshot


def _update_goal(goal_id: object, event_id: int) -> Decimal | None:
    goal = Goal.objects.select_for_update().filter(pk=goal_id).first()
    if goal is None:
        return None
    set_goal_percent(goal, goal_percent(goal))
    goal.save(update_fields=["progress_percent", "status", "updated_at"])
    return goal.progress_percent
