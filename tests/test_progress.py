"""The progress subscriber: recomputed figures, snapshots, milestones emitted exactly once."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from outbox.models import OutboxEvent
from tasks_app import services
from tasks_app.models import Goal, Project, Task
from workers.models import Preferences, ProgressSnapshot
from workers.progress import figures as progress

from .conftest import deliver, events_of
from .factories import GoalFactory, ProjectFactory, TaskFactory

pytestmark = pytest.mark.django_db


def complete(task: Task) -> OutboxEvent:
    services.complete_task(task, by=task.owner)
    return OutboxEvent.objects.filter(aggregate_id=str(task.pk)).latest("id")


def test_percent_is_weighted_by_estimate(user) -> None:
    project = ProjectFactory(owner=user)
    big = TaskFactory(owner=user, project=project, estimate=3)
    TaskFactory(owner=user, project=project, estimate=1)
    TaskFactory(owner=user, project=project, estimate=None)  # weighs the mean: 2
    event = complete(big)
    assert deliver("progress", event) == {"succeeded": 1}
    snapshot = ProgressSnapshot.objects.get(project=project)
    assert snapshot.percent == Decimal("50.00")
    assert (snapshot.tasks_done, snapshot.tasks_total) == (1, 3)
    project.refresh_from_db()
    assert project.progress_percent == Decimal("50.00")


def test_a_repeated_delivery_changes_nothing(user) -> None:
    project = ProjectFactory(owner=user)
    task = TaskFactory(owner=user, project=project)
    TaskFactory(owner=user, project=project)
    event = complete(task)
    deliver("progress", event)
    first = ProgressSnapshot.objects.get()
    deliver("progress", event)  # a replay, or the same message twice
    assert ProgressSnapshot.objects.count() == 1
    assert ProgressSnapshot.objects.get().percent == first.percent == Decimal("50.00")


def test_finishing_a_project_and_goal_emits_each_milestone_once(user) -> None:
    goal = GoalFactory(owner=user)
    project = ProjectFactory(owner=user, goal=goal)
    first, last = TaskFactory(owner=user, project=project), TaskFactory(owner=user, project=project)
    deliver("progress", complete(first))
    assert events_of("project.completed") == []
    event = complete(last)
    deliver("progress", event)
    deliver("progress", event)  # delivered twice: still one milestone each
    [project_done] = events_of("project.completed")
    [goal_reached] = events_of("goal.reached")
    assert project_done.payload == {
        "type": "project.completed",
        "version": 1,
        "project_id": str(project.pk),
        "user_id": user.pk,
        "goal_id": str(goal.pk),
    }
    assert goal_reached.payload["goal_id"] == str(goal.pk)
    project.refresh_from_db()
    goal.refresh_from_db()
    assert project.status == Project.Status.COMPLETED and project.progress_percent == 100
    assert goal.status == Goal.Status.REACHED and goal.progress_percent == 100


def test_a_goal_waits_for_all_its_projects(user) -> None:
    goal = GoalFactory(owner=user)
    done = TaskFactory(owner=user, project=ProjectFactory(owner=user, goal=goal))
    TaskFactory(owner=user, project=ProjectFactory(owner=user, goal=goal))
    deliver("progress", complete(done))
    assert len(events_of("project.completed")) == 1
    assert events_of("goal.reached") == []
    goal.refresh_from_db()
    assert goal.progress_percent == Decimal("50.00")


def test_a_deleted_project_moves_its_goal(user) -> None:
    """The goal is the mean of its live projects: deleting the unfinished one finishes it."""
    goal = GoalFactory(owner=user)
    done = TaskFactory(owner=user, project=ProjectFactory(owner=user, goal=goal))
    unfinished = ProjectFactory(owner=user, goal=goal)
    TaskFactory(owner=user, project=unfinished)
    deliver("progress", complete(done))
    goal.refresh_from_db()
    assert goal.progress_percent == Decimal("50.00")
    services.delete_project(unfinished)
    deliver("progress", OutboxEvent.objects.get(type="project.deleted"))
    goal.refresh_from_db()
    assert (goal.progress_percent, goal.status) == (Decimal("100.00"), Goal.Status.REACHED)
    assert len(events_of("goal.reached")) == 1


def test_reopened_then_finished_again_emits_again(user) -> None:
    project = ProjectFactory(owner=user, goal=None)
    task = TaskFactory(owner=user, project=project)
    deliver("progress", complete(task))
    services.reopen_task(task)
    deliver("progress", OutboxEvent.objects.get(type="task.reopened"))
    project.refresh_from_db()
    assert project.status == Project.Status.ACTIVE and project.progress_percent == 0
    deliver("progress", complete(task))
    assert len(events_of("project.completed")) == 2


def test_a_deleted_task_moves_the_project(user) -> None:
    project = ProjectFactory(owner=user, goal=None)
    done = TaskFactory(owner=user, project=project)
    doomed = TaskFactory(owner=user, project=project)
    deliver("progress", complete(done))
    services.delete_task(doomed)
    deliver("progress", OutboxEvent.objects.get(type="task.deleted"))
    project.refresh_from_db()
    assert project.progress_percent == 100
    assert len(events_of("project.completed")) == 1


def test_a_task_without_project_or_a_vanished_project_is_fine(user) -> None:
    lone = TaskFactory(owner=user, project=None)
    assert deliver("progress", complete(lone)) == {"succeeded": 1}
    task = TaskFactory(owner=user)
    event = complete(task)
    task.project.delete()
    assert deliver("progress", event) == {"succeeded": 1}
    assert not ProgressSnapshot.objects.exists()


def test_streak_counts_consecutive_days_ending_today_or_yesterday() -> None:
    today = date(2026, 11, 29)
    days = {today, today - timedelta(days=1), today - timedelta(days=2), today - timedelta(days=4)}
    assert progress.streak(days, today) == 3
    assert progress.streak(days - {today}, today) == 2  # today is not over yet
    assert progress.streak({today - timedelta(days=2)}, today) == 0
    assert progress.streak(set(), today) == 0


def test_streak_uses_the_users_time_zone(user) -> None:
    Preferences.objects.create(user=user, time_zone="Pacific/Auckland")
    # 11:00 UTC on two consecutive UTC days = 00:00 the next day in Auckland (UTC+13).
    now = datetime(2026, 11, 29, 11, 30, tzinfo=ZoneInfo("UTC"))
    for when in (now - timedelta(days=1, minutes=20), now - timedelta(minutes=20)):
        Task.objects.filter(pk=TaskFactory(owner=user).pk).update(status="completed", completed_at=when)
    figures = progress.user_figures(user.pk, now=now)
    assert figures.streak_days == 2
    assert figures.pace_per_week == Decimal("0.50")  # 2 completions over 4 weeks


def test_the_streak_reads_one_row_per_day_not_one_per_completion(user) -> None:
    now = timezone.now()
    for when in [now - timedelta(minutes=m) for m in range(12)] + [now - timedelta(days=1)]:
        Task.objects.filter(pk=TaskFactory(owner=user).pk).update(status="completed", completed_at=when)
    rows = list(progress.completion_days(user.pk, now - timedelta(days=30), ZoneInfo("UTC")))
    assert sorted(rows) == sorted(
        {(now - timedelta(minutes=m)).date() for m in range(12)} | {(now - timedelta(days=1)).date()}
    )


def test_estimated_finish_follows_the_pace(user) -> None:
    project = ProjectFactory(owner=user)
    tasks = TaskFactory.create_batch(4, owner=user, project=project)
    for t in tasks[:2]:
        Task.objects.filter(pk=t.pk).update(status="completed", completed_at=timezone.now())
    figures = progress.project_figures(project)
    user_figs = progress.user_figures(user.pk)
    today = timezone.now().date()
    # 2 completions in 28 days: 1 task per 14 days, 2 left.
    assert progress.estimated_finish(project, figures, user_figs, today) == today + timedelta(days=28)


def test_progress_api_shows_current_figures_and_history(api: APIClient, user, other_api: APIClient) -> None:
    project = ProjectFactory(owner=user)
    first, second = TaskFactory(owner=user, project=project), TaskFactory(owner=user, project=project)
    deliver("progress", complete(first))
    deliver("progress", complete(second))
    body = api.get(f"/api/projects/{project.pk}/progress/").json()
    assert body["percent"] == "100.00" and body["tasks_done"] == 2
    assert body["streak_days"] == 1
    assert [h["percent"] for h in body["history"]] == ["100.00", "50.00"]
    assert api.get(f"/api/projects/{project.pk}/").json()["progress_percent"] == "100.00"
    assert api.get(f"/api/goals/{project.goal_id}/").json()["progress_percent"] == "100.00"
    assert other_api.get(f"/api/projects/{project.pk}/progress/").status_code == 404
    assert api.get("/api/projects/not-a-uuid/progress/").status_code == 404


def test_history_reads_as_it_happened_even_when_the_worker_runs_late(user) -> None:
    project = ProjectFactory(owner=user)
    first, second = TaskFactory(owner=user, project=project), TaskFactory(owner=user, project=project)
    events = [complete(first), complete(second)]  # both done before progress runs
    for event in events:
        deliver("progress", event)
    history = list(ProgressSnapshot.objects.order_by("event_id").values_list("percent", flat=True))
    assert history == [Decimal("50.00"), Decimal("100.00")]
    project.refresh_from_db()
    assert project.progress_percent == 100  # the current figure is current
