"""Progress over a batch of events at once: each project, goal and user recomputed once per
batch, one snapshot per event, with a number of queries that does not grow with the batch
(only with the number of owners: their streak and pace are read per owner).

One event is a batch of one (the subscriber's plain handler calls this too). Current percents
and statuses come from the rows, each snapshot is as of its own event's completion time, and
`project.completed` / `goal.reached` are published once per transition (`milestones`). Locks
are taken in one order (projects, then goals, each by primary key), so two batches never
deadlock on each other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from outbox.api import Event
from tasks_app.events import DELETE_PAYLOAD_VERSION, PROJECT_DELETED, TASK_PAYLOAD_VERSION
from tasks_app.models import Goal, Project, Task

from ..models import ProgressSnapshot
from .figures import (
    ProjectFigures,
    Timeline,
    UserFigures,
    finish_from,
    mean_percent,
    pace_window_start,
    user_figures,
)
from .milestones import set_goal_percent, set_project_percent

logger = logging.getLogger(__name__)

Rows = list[tuple[datetime | None, int | None]]  # (completed_at, estimate) of a project's tasks


def update_progress_many(events: Sequence[Event]) -> None:
    """The batch handler of the progress subscriber."""
    as_of: dict[int, tuple[str, datetime]] = {}  # event id -> (its project, the snapshot's moment)
    goal_ids: set[str] = set()
    for event in events:
        if event.type == PROJECT_DELETED:
            # The goal's percent is the mean of its live projects: one fewer, recompute it.
            # A project outside any goal names goal_id null: no goal to recompute.
            event.require("user_id", version=DELETE_PAYLOAD_VERSION)
            if event.payload.get("goal_id"):
                goal_ids.add(str(event.payload["goal_id"]))
            continue
        event.require("user_id", version=TASK_PAYLOAD_VERSION)
        if project_id := event.payload.get("project_id"):  # a task outside any project moves none
            completed_at = event.payload.get("completed_at")
            moment = parse_datetime(completed_at) if completed_at else None
            as_of[event.id] = (str(project_id), moment or event.created_at)

    # Locked, so that exactly one recompute of a project sees its transition to 100 %.
    projects = {
        str(p.pk): p
        for p in Project.objects.select_for_update()
        .filter(pk__in={project_id for project_id, _ in as_of.values()})
        .order_by("pk")
    }
    goal_ids |= {str(p.goal_id) for p in projects.values() if p.goal_id}
    goals = {str(g.pk): g for g in Goal.objects.select_for_update().filter(pk__in=goal_ids).order_by("pk")}
    # The goals' other live projects count in their percent: their tasks are read with ours.
    siblings = [
        p
        for p in Project.objects.filter(goal_id__in=goals).exclude(status=Project.Status.ARCHIVED)
        if str(p.pk) not in projects
    ]
    rows = _task_rows([*projects, *(str(p.pk) for p in siblings)])
    recent = _recent_counts(rows, projects)

    timelines = {pk: Timeline(rows[pk]) for pk in [*projects, *(str(p.pk) for p in siblings)]}
    figures = {pk: timeline.figures() for pk, timeline in timelines.items()}
    now = timezone.now()
    for project in projects.values():
        set_project_percent(project, figures[str(project.pk)].percent, now)
    Project.objects.bulk_update(projects.values(), ["progress_percent", "status", "updated_at"])

    for goal in goals.values():
        live = [
            p
            for p in [*projects.values(), *siblings]
            if p.goal_id == goal.pk and p.status != Project.Status.ARCHIVED and rows[str(p.pk)]
        ]
        set_goal_percent(goal, mean_percent([figures[str(p.pk)].percent for p in live]), now)
    Goal.objects.bulk_update(goals.values(), ["progress_percent", "status", "updated_at"])

    users = {owner: user_figures(owner) for owner in {p.owner_id for p in projects.values()}}
    snapshots = []
    for event_id, (project_id, moment) in as_of.items():
        if (project := projects.get(project_id)) is None:
            logger.info("progress: project %s is gone; event %s skipped", project_id, event_id)
            continue
        snapshots.append(
            _snapshot(
                project,
                event_id,
                figures[project_id],
                timelines[project_id].figures(moment),
                goals.get(str(project.goal_id)),
                users[project.owner_id],
                recent[project_id],
            )
        )
    # As update_or_create one by one: a replayed event's snapshot is rewritten, not added.
    ProgressSnapshot.objects.bulk_create(
        snapshots,
        update_conflicts=True,
        unique_fields=["project", "event_id"],
        update_fields=[
            "percent",
            "tasks_done",
            "tasks_total",
            "goal_percent",
            "streak_days",
            "pace_per_week",
            "estimated_finish",
        ],
    )


def _task_rows(project_ids: list[str]) -> dict[str, Rows]:
    rows: dict[str, Rows] = {pk: [] for pk in project_ids}
    for project_id, completed_at, estimate in Task.objects.filter(project_id__in=project_ids).values_list(
        "project_id", "completed_at", "estimate"
    ):
        rows[str(project_id)].append((completed_at, estimate))
    return rows


def _recent_counts(rows: dict[str, Rows], projects: dict[str, Project]) -> dict[str, int]:
    """Each project's tasks completed in the pace window (its recent pace), from the rows read."""
    since = pace_window_start()
    return {
        pk: sum(1 for completed_at, _ in rows[pk] if completed_at and completed_at >= since)
        for pk in projects
    }


def _snapshot(
    project: Project,
    event_id: int,
    now: ProjectFigures,
    then: ProjectFigures,
    goal: Goal | None,
    user: UserFigures,
    recent_done: int,
) -> ProgressSnapshot:
    return ProgressSnapshot(
        project=project,
        event_id=event_id,
        percent=then.percent,
        tasks_done=then.tasks_done,
        tasks_total=then.tasks_total,
        goal_percent=goal.progress_percent if goal else None,
        streak_days=user.streak_days,
        pace_per_week=user.pace_per_week,
        estimated_finish=finish_from(now, recent_done, user, user.today),
    )
