"""Progress figures, computed from the rows: a project's percent (as of any moment), a goal's,
the user's streak and pace, and an estimated finish. The progress subscriber, the story
and the API all read these; nothing here writes.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from statistics import mean
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from tasks_app.models import Goal, Project, Task

from ..models import Preferences

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
    return Timeline(rows).figures(as_of)


class Timeline:
    """A project's tasks, read once, for its figures as of any moment.

    Batches ask for one project's figures as of each of their events' moments: a scan of the
    rows per moment made a batch of 100 completions in a project of 20,000 tasks two million
    steps (seconds of CPU, in progress and in story). Sorted once, each moment is a binary
    search and a look-up of the weight done by then."""

    def __init__(self, rows: list[tuple[datetime | None, int | None]]) -> None:
        estimates = [e for _, e in rows if e]
        default_weight = mean(estimates) if estimates else 1
        self.count = len(rows)
        self.total = sum(e or default_weight for _, e in rows)
        done = sorted((c, e or default_weight) for c, e in rows if c is not None)
        self.moments = [c for c, _ in done]
        self.done_weight = list(accumulate(w for _, w in done))  # by the i-th completion, in order

    def figures(self, as_of: datetime | None = None) -> ProjectFigures:
        done = len(self.moments) if as_of is None else bisect_right(self.moments, as_of)
        weight = self.done_weight[done - 1] if done else 0
        percent = Decimal(100 * weight / self.total).quantize(Decimal("0.01")) if self.total else Decimal(0)
        return ProjectFigures(percent=percent, tasks_done=done, tasks_total=self.count)


def figures_at_completion(tasks: Iterable[Task]) -> dict[object, ProjectFigures]:
    """project_figures(task.project, as_of=task.completed_at) for many tasks, by task pk, in one
    query: each project's rows are read once however many of the tasks it holds (the story's
    batch). Tasks without a project are absent from the answer."""
    tasks = [t for t in tasks if t.project_id is not None]
    rows: dict[object, list[tuple[datetime | None, int | None]]] = defaultdict(list)
    project_rows = Task.objects.filter(project_id__in={t.project_id for t in tasks}).values_list(
        "project_id", "completed_at", "estimate"
    )
    for project_id, completed_at, estimate in project_rows:
        rows[project_id].append((completed_at, estimate))
    timelines = {project_id: Timeline(project) for project_id, project in rows.items()}
    return {t.pk: timelines.get(t.project_id, Timeline([])).figures(t.completed_at) for t in tasks}


def goal_percent(goal: Goal) -> Decimal:
    """The mean of its live projects' percents (archived projects and empty ones do not count)."""
    projects = [p for p in goal.projects.exclude(status=Project.Status.ARCHIVED) if p.tasks.exists()]
    return mean_percent([project_figures(p).percent for p in projects])


def mean_percent(percents: list[Decimal]) -> Decimal:
    """goal_percent() over its live, non-empty projects' percents already computed."""
    if not percents:
        return Decimal(0)
    return Decimal(mean(percents)).quantize(Decimal("0.01"))


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
    days = set(completion_days(user_id, now - timedelta(days=STREAK_LOOKBACK_DAYS), zone))
    recent = Task.objects.filter(
        owner_id=user_id,
        status=Task.Status.COMPLETED,
        completed_at__gte=now - timedelta(days=PACE_WINDOW_DAYS),
    ).count()
    today = now.astimezone(zone).date()
    return UserFigures(
        streak_days=streak(days, today),
        pace_per_week=(Decimal(recent) * 7 / PACE_WINDOW_DAYS).quantize(Decimal("0.01")),
        today=today,
    )


def completion_days(user_id: int, since: datetime, zone: ZoneInfo) -> QuerySet[Task, date]:
    """The days (in `zone`) on which the user completed a task since `since`: one row per day."""
    return (
        Task.objects.filter(owner_id=user_id, status=Task.Status.COMPLETED, completed_at__gte=since)
        .annotate(day=TruncDate("completed_at", tzinfo=zone))
        # No ordering: with the model's (-created_at), DISTINCT would be over the day *and* the
        # creation time, one row per completion, and every batch would read the user's history.
        .order_by()
        .values_list("day", flat=True)
        .distinct()
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
    recent = project.tasks.filter(completed_at__gte=pace_window_start()).count()
    return finish_from(figures, recent, user, today)


def pace_window_start() -> datetime:
    """Tasks completed since then set a project's recent pace."""
    return timezone.now() - timedelta(days=PACE_WINDOW_DAYS)


def finish_from(figures: ProjectFigures, recent_done: int, user: UserFigures, today: date) -> date | None:
    """estimated_finish() with the project's tasks completed in the pace window already counted."""
    remaining = figures.tasks_total - figures.tasks_done
    if remaining == 0:
        return today if figures.tasks_total else None
    per_day = recent_done / PACE_WINDOW_DAYS or float(user.pace_per_week) / 7
    if not per_day:
        return None
    return today + timedelta(days=math.ceil(remaining / per_day))
