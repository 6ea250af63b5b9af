"""The progress subscriber's batch handler: the figures one by one would give, with a number of
queries that does not grow with the batch, a bad event failing alone, and replays adding nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from outbox.delivery import run_deliveries
from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Goal, Project, Task
from workers.events import GOAL_REACHED, PROJECT_COMPLETED
from workers.models import ProgressSnapshot

from .conftest import deliver, events_of
from .deliveries import dispatched
from .factories import GoalFactory, ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db

# A snapshot's project figures are as of its event; the rest are as of when it was written, which
# one by one differs from event to event and in a batch does not (the last ones agree).
AS_OF_EVENT = ("percent", "tasks_done", "tasks_total")
SNAPSHOT_FIELDS = (
    *AS_OF_EVENT,
    "goal_percent",
    "streak_days",
    "pace_per_week",
    "estimated_finish",
)


def complete(task: Task) -> OutboxEvent:
    services.complete_task(task, by=task.owner)
    return OutboxEvent.objects.filter(aggregate_id=str(task.pk)).latest("id")


def world(owner: Any) -> list[Task]:
    """A loose task, then the tasks that finish one of a goal's two projects (the other is half done)."""
    goal = GoalFactory(owner=owner, title="Run a marathon")
    first = ProjectFactory(owner=owner, goal=goal, title="Base")
    second = ProjectFactory(owner=owner, goal=goal, title="Speed")
    TaskFactory(owner=owner, project=second, estimate=2)
    done = TaskFactory(owner=owner, project=second, estimate=2)
    services.complete_task(done, by=owner)
    loose = TaskFactory(owner=owner, project=None, title="Loose")
    return [loose, *(TaskFactory(owner=owner, project=first, estimate=e) for e in (1, 3, None))]


def outcome(owner: Any) -> dict[str, Any]:
    """Everything progress writes for one owner, in an order that does not depend on ids."""
    snapshots = list(ProgressSnapshot.objects.filter(project__owner=owner).order_by("event_id"))
    return {
        "snapshots": [(s.project.title, *(getattr(s, f) for f in AS_OF_EVENT)) for s in snapshots],
        "last snapshot": [getattr(snapshots[-1], f) for f in SNAPSHOT_FIELDS] if snapshots else None,
        "projects": sorted(
            Project.objects.filter(owner=owner).values_list("title", "progress_percent", "status")
        ),
        "goals": sorted(Goal.objects.filter(owner=owner).values_list("title", "progress_percent", "status")),
        "milestones": [
            (e.type, e.payload.get("user_id") == owner.pk)
            for e in OutboxEvent.objects.filter(
                type__in=[PROJECT_COMPLETED, GOAL_REACHED], payload__user_id=owner.pk
            )
        ],
    }


def test_a_batch_writes_what_one_by_one_writes() -> None:
    alone, together = UserFactory(), UserFactory()
    for task in world(alone):
        assert deliver("progress", complete(task)) == {"succeeded": 1}
    events = [complete(t) for t in world(together)]
    assert run_deliveries("progress", dispatched("progress", events)) == {"succeeded": 4}

    assert outcome(together) == outcome(alone)
    got = outcome(together)
    assert len(got["snapshots"]) == 3  # one per event in a project, each as of its own completion
    assert [s[1] for s in got["snapshots"]] == sorted(s[1] for s in got["snapshots"])
    assert ("Base", 100, "completed") in [(t, int(p), s) for t, p, s in got["projects"]]
    assert len(got["milestones"]) == 1  # project.completed once; the goal is at 75 %


def test_the_queries_do_not_grow_with_the_batch(user) -> None:
    def queries_for(n: int) -> int:
        project = ProjectFactory(owner=user, goal=GoalFactory(owner=user))
        tasks = [TaskFactory(owner=user, project=project) for _ in range(n + 1)]
        ids = dispatched("progress", [complete(t) for t in tasks[:n]])
        with CaptureQueriesContext(connection) as queries:
            assert run_deliveries("progress", ids)["succeeded"] == n
        return len(queries)

    assert queries_for(40) == queries_for(5)


def test_a_bad_event_fails_alone_and_the_rest_of_the_batch_succeeds(user) -> None:
    project = ProjectFactory(owner=user)
    tasks = [TaskFactory(owner=user, project=project) for _ in range(3)]
    events = [complete(t) for t in tasks]
    bad = OutboxEvent.objects.create(
        type="task.completed", aggregate_type="tasks_app.task", aggregate_id="x", payload={"version": 1}
    )
    ids = dispatched("progress", [*events, bad])
    counts = run_deliveries("progress", ids)
    assert (
        counts["succeeded"] == 3
        and counts["succeeded"] + counts.get("dead", 0) + counts.get("retrying", 0) == 4
    )
    assert Delivery.objects.get(event=bad).status != Delivery.Status.SUCCEEDED
    assert ProgressSnapshot.objects.filter(project=project).count() == 3


def test_a_replayed_batch_adds_no_snapshot_and_no_second_milestone(user) -> None:
    project = ProjectFactory(owner=user)
    events = [complete(t) for t in [TaskFactory(owner=user, project=project) for _ in range(2)]]
    run_deliveries("progress", dispatched("progress", events))
    before = outcome(user)
    Delivery.objects.filter(event__in=events).update(status=Delivery.Status.DISPATCHED)
    assert (
        run_deliveries(
            "progress", list(Delivery.objects.filter(event__in=events).values_list("pk", flat=True))
        )["succeeded"]
        == 2
    )
    assert outcome(user) == before
    assert len(events_of(PROJECT_COMPLETED)) == 1
