"""Progress analysis: recompute a project's and its goal's progress, the user's streak and pace.

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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from statistics import mean
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from outbox.api import Event, RetryPolicy, publish, subscriber
from tasks_app.events import TASK_COMPLETED, TASK_DELETED, TASK_PAYLOAD_VERSION, TASK_REOPENED
from tasks_app.models import Goal, Project, Task

from .events import GOAL_REACHED, PROJECT_COMPLETED
from .models import Preferences, ProgressSnapshot
from .queues import Queue

logger = logging.getLogger(__name__)

PACE_WINDOW_DAYS = 28
STREAK_LOOKBACK_DAYS = 400
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class ProjectFigures:
    percent: Decimal
    tasks_done: int
    tasks_total: int


@dataclass(frozen=True)
class UserFigures:
    streak_days: int
    pace_per_week: Decimal
    today: date  # in the user's time zone


def project_figures(project: Project, as_of: datetime | None = None) -> ProjectFigures:
    """Percent complete, weighted by estimate; a task with none weighs the mean of those that have one.

    With `as_of`, a task counts as done only if it was completed by then: the figures
    of that moment, recomputed from the rows (so the same answer however often asked).
    """
    return figures_from(list(project.tasks.values_list("completed_at", "estimate")), as_of)


def figures_from(
    rows: list[tuple[datetime | None, int | None]], as_of: datetime | None = None
) -> ProjectFigures:
    """project_figures() over (completed_at, estimate) rows already read."""
    estimates = [e for _, e in rows if e]
    default_weight = mean(estimates) if estimates else 1
    done_rows = [(c, e) for c, e in rows if c is not None and (as_of is None or c <= as_of)]
    total = sum(e or default_weight for _, e in rows)
    done = sum(e or default_weight for _, e in done_rows)
    percent = Decimal(100 * done / total).quantize(Decimal("0.01")) if total else Decimal(0)
    return ProjectFigures(percent=percent, tasks_done=len(done_rows), tasks_total=len(rows))


def goal_percent(goal: Goal) -> Decimal:
    """The mean of its live projects' percents (archived projects and empty ones do not count)."""
    projects = [p for p in goal.projects.exclude(status=Project.Status.ARCHIVED) if p.tasks.exists()]
    if not projects:
        return Decimal(0)
    return Decimal(mean(project_figures(p).percent for p in projects)).quantize(Decimal("0.01"))


def user_zone(user_id: int) -> ZoneInfo:
    return zone_named(Preferences.objects.filter(user_id=user_id).values_list("time_zone", flat=True).first())


def zone_named(name: str | None) -> ZoneInfo:
    """The zone of that name; UTC when there is none or it is unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def user_figures(user_id: int, now: datetime | None = None) -> UserFigures:
    now = now or timezone.now()
    zone = user_zone(user_id)
    completed = Task.objects.filter(owner_id=user_id, status=Task.Status.COMPLETED)
    days = set(
        completed.filter(completed_at__gte=now - timedelta(days=STREAK_LOOKBACK_DAYS))
        .annotate(day=TruncDate("completed_at", tzinfo=zone))
        .values_list("day", flat=True)
        .distinct()
    )
    recent = completed.filter(completed_at__gte=now - timedelta(days=PACE_WINDOW_DAYS)).count()
    today = now.astimezone(zone).date()
    return UserFigures(
        streak_days=streak(days, today),
        pace_per_week=(Decimal(recent) * 7 / PACE_WINDOW_DAYS).quantize(Decimal("0.01")),
        today=today,
    )


def streak(days: set[date], today: date) -> int:
    """Consecutive days with a completion, ending today (or yesterday: today is not over yet)."""
    day = today if today in days else today - timedelta(days=1)
    count = 0
    while day in days:
        count += 1
        day -= timedelta(days=1)
    return count


def estimated_finish(
    project: Project, figures: ProjectFigures, user: UserFigures, today: date
) -> date | None:
    """When the remaining tasks are done at the project's recent pace (else the user's)."""
    remaining = figures.tasks_total - figures.tasks_done
    if remaining == 0:
        return today if figures.tasks_total else None
    since = timezone.now() - timedelta(days=PACE_WINDOW_DAYS)
    per_day = project.tasks.filter(completed_at__gte=since).count() / PACE_WINDOW_DAYS
    per_day = per_day or float(user.pace_per_week) / 7
    if not per_day:
        return None
    return today + timedelta(days=math.ceil(remaining / per_day))


@subscriber(
    "progress",
    events=[TASK_COMPLETED, TASK_REOPENED, TASK_DELETED],
    queue=Queue.PROGRESS,
    retry=RetryPolicy(max_retries=5, backoff=1, backoff_max=60),
)
def update_progress(event: Event) -> None:
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
    project.progress_percent = figures.percent
    if figures.percent == HUNDRED and project.status == Project.Status.ACTIVE:
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
        logger.info("progress: project %s completed (event %s)", project.pk, event_id)
    elif figures.percent < HUNDRED and project.status == Project.Status.COMPLETED:
        project.status = Project.Status.ACTIVE
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
    goal.progress_percent = goal_percent(goal)
    if goal.progress_percent == HUNDRED and goal.status == Goal.Status.ACTIVE:
        goal.status = Goal.Status.REACHED
        publish(GOAL_REACHED, goal, {"goal_id": str(goal.pk), "user_id": goal.owner_id})
        logger.info("progress: goal %s reached (event %s)", goal.pk, event_id)
    elif goal.progress_percent < HUNDRED and goal.status == Goal.Status.REACHED:
        goal.status = Goal.Status.ACTIVE
    goal.save(update_fields=["progress_percent", "status", "updated_at"])
    return goal.progress_percent
