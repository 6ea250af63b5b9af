"""`outbox audit` after every kind of forgetting: a delete, a reopen, an account delete pass
the audit; an effect missing for something that still exists still fails it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from outbox import registry
from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Project, Task
from workers.models import Device, MemoryEntry, Notification, ProgressSnapshot, StorySegment

from .conftest import client_for, deliver
from .factories import GoalFactory, ProjectFactory, TaskFactory, UserFactory
from .test_audit import audit
from .test_deletes_forget import drain

pytestmark = pytest.mark.django_db


def settle() -> None:
    """Every event delivered to the real subscribers, then left as the relay leaves it:
    dispatched, with a succeeded delivery for each test-only subscriber of its type."""
    drain()
    now = timezone.now()
    OutboxEvent.objects.update(status=OutboxEvent.Status.DISPATCHED, dispatched_at=now)
    for event in OutboxEvent.objects.all():
        for sub in registry.for_event(event.type):
            Delivery.objects.get_or_create(
                event=event, subscriber=sub.name, defaults={"status": Delivery.Status.SUCCEEDED}
            )


def passes() -> str:
    ok, out = audit()
    assert ok, out
    return out


@pytest.fixture
def world(user: Any) -> dict[str, Any]:
    """One user's finished goal (a project of two completed tasks, so project.completed and
    goal.reached were emitted and notified), a loose completed task, and a phone; everything
    delivered; and a second user with a completed task of their own."""
    Device.objects.create(owner=user, token="phone", platform="android")
    goal = GoalFactory(owner=user, title="Swim a mile")
    project = ProjectFactory(owner=user, goal=goal, title="Harbour season")
    first, second = (TaskFactory(owner=user, project=project) for _ in range(2))
    loose = TaskFactory(owner=user, project=ProjectFactory(owner=user, goal=None))
    TaskFactory(owner=user, project=loose.project)  # keeps that project open
    stranger = UserFactory(username="stranger")
    theirs = TaskFactory(owner=stranger)
    for task in (first, second, loose, theirs):
        services.complete_task(task, by=task.owner)
    settle()
    assert {"project.completed", "goal.reached"} <= set(OutboxEvent.objects.values_list("type", flat=True))
    assert Notification.objects.filter(owner=user).count() == 5  # 3 tasks, the project, the goal
    return {
        "api": client_for(user),
        "user": user,
        "goal": goal,
        "project": project,
        "first": first,
        "loose": loose,
        "theirs": theirs,
    }


def delete_task(w: dict[str, Any]) -> None:
    assert w["api"].delete(f"/api/tasks/{w['first'].pk}/").status_code == 204


def delete_project(w: dict[str, Any]) -> None:
    assert w["api"].delete(f"/api/projects/{w['project'].pk}/").status_code == 204


def delete_goal(w: dict[str, Any]) -> None:
    assert w["api"].delete(f"/api/goals/{w['goal'].pk}/").status_code == 204


def reopen(w: dict[str, Any]) -> None:
    services.reopen_task(Task.objects.get(pk=w["first"].pk))


def reopen_and_complete_again(w: dict[str, Any]) -> None:
    task = Task.objects.get(pk=w["first"].pk)
    services.reopen_task(task)
    services.complete_task(task, by=task.owner)


def delete_the_account(w: dict[str, Any]) -> None:
    response = w["api"].delete("/api/me/", {"password": "correct horse battery staple"}, format="json")
    assert response.status_code == 204, response.content


def delete_an_empty_project_and_goal(w: dict[str, Any]) -> None:
    """Nothing in them: the delete events name no tasks, no projects, no goal."""
    project = ProjectFactory(owner=w["user"], goal=None)
    goal = GoalFactory(owner=w["user"])
    assert w["api"].delete(f"/api/projects/{project.pk}/").status_code == 204
    assert w["api"].delete(f"/api/goals/{goal.pk}/").status_code == 204


def everything_at_once(w: dict[str, Any]) -> None:
    reopen(w)
    delete_task(w)
    delete_project(w)
    delete_goal(w)


FORGETTING: dict[str, Callable[[dict[str, Any]], None]] = {
    "task delete": delete_task,
    "project delete": delete_project,
    "goal delete": delete_goal,
    "reopen": reopen,
    "reopen and complete again": reopen_and_complete_again,
    "empty project and goal delete": delete_an_empty_project_and_goal,
    "account delete": delete_the_account,
    "all of them": everything_at_once,
}


@pytest.mark.parametrize("forget", FORGETTING.values(), ids=FORGETTING.keys())
def test_the_audit_passes_after_forgetting(world, forget) -> None:
    passes()
    forget(world)
    settle()
    out = passes()
    assert "dead deliveries: 0" in out


@pytest.mark.parametrize("forget", FORGETTING.values(), ids=FORGETTING.keys())
def test_a_missing_effect_is_still_found_after_forgetting(world, forget) -> None:
    """What forgetting spares (the stranger's task, always) must still have its effects."""
    forget(world)
    settle()
    theirs = str(world["theirs"].pk)
    [event] = OutboxEvent.objects.filter(type="task.completed", aggregate_id=theirs)
    Notification.objects.filter(event_id=event.pk).delete()
    StorySegment.objects.filter(subject_id=theirs).delete()
    MemoryEntry.objects.filter(task_id=theirs).delete()
    ProgressSnapshot.objects.filter(event_id=event.pk).delete()
    from outbox.eventlog.models import EventLog

    EventLog.objects.filter(event_id=event.pk).delete()
    ok, out = audit()
    assert not ok
    assert f"event {event.pk} (task.completed): no in-app notification" in out
    assert f"task {theirs} has 0 story segments" in out
    assert f"completed task {theirs} is not in memory" in out
    assert f"event {event.pk}: no progress snapshot" in out
    assert f"event {event.pk} (task.completed) is not in the event log" in out


def test_a_missing_notification_of_a_kept_subject_is_found(world) -> None:
    """The user deleted one task; the notification of a task they kept is still required."""
    delete_task(world)
    settle()
    [event] = OutboxEvent.objects.filter(type="task.completed", aggregate_id=str(world["loose"].pk))
    Notification.objects.filter(event_id=event.pk).delete()
    ok, out = audit()
    assert not ok
    assert f"event {event.pk} (task.completed): no in-app notification" in out


def test_a_subject_deleted_before_its_delivery_needs_no_notification(world) -> None:
    """A project completed and deleted before notifications ran: that delivery succeeded with
    nothing to say, and the audit agrees."""
    project = ProjectFactory(owner=world["user"], goal=None)
    task = TaskFactory(owner=world["user"], project=project)
    services.complete_task(task, by=task.owner)
    deliver("progress", OutboxEvent.objects.get(type="task.completed", aggregate_id=str(task.pk)))
    finished = OutboxEvent.objects.get(type="project.completed", aggregate_id=str(project.pk))
    services.delete_project(Project.objects.get(pk=project.pk))
    settle()
    assert Delivery.objects.get(event=finished, subscriber="notifications").status == "succeeded"
    assert not Notification.objects.filter(event_id=finished.pk).exists()
    passes()
