"""Deleting a task, project or goal, from the API or the admin, leaves no trace in the owner's
story, notifications or memory; a delete that races the subscribers leaves none either."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from outbox import registry
from outbox.models import OutboxEvent
from tasks_app import services
from tasks_app.models import Goal, Project, Task
from workers.models import Device, MemoryEntry, Notification, PushReceipt, StorySegment

from .conftest import client_for, deliver
from .factories import GoalFactory, MediaAttachmentFactory, ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db

SUBSCRIBERS = ("progress", "story", "notifications", "memory")
ADMIN_URL = {Task: "tasks_app/task", Project: "tasks_app/project", Goal: "tasks_app/goal"}
API_URL = {Task: "tasks", Project: "projects", Goal: "goals"}


def run(events: list[OutboxEvent]) -> None:
    """Each event to every real subscriber that takes it, through the delivery wrapper."""
    for event in events:
        for sub in registry.for_event(event.type):
            if sub.name in SUBSCRIBERS:
                assert deliver(sub.name, event) == {"succeeded": 1}, (sub.name, event.type)


def drain(after: int = 0) -> int:
    """Deliver every event after `after`, and those the subscribers emit meanwhile; the last id."""
    while new := list(OutboxEvent.objects.filter(id__gt=after).order_by("id")):
        run(new)
        after = new[-1].id
    return after


def delete(obj: Task | Project | Goal, path: str) -> None:
    model = type(obj)
    if path == "api":
        assert client_for(obj.owner).delete(f"/api/{API_URL[model]}/{obj.pk}/").status_code == 204
        return
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    if path == "admin":
        url = f"/admin/{ADMIN_URL[model]}/{obj.pk}/delete/"
        response = admin.post(url, {"post": "yes"})
    else:  # the changelist's bulk "Delete selected"
        url = f"/admin/{ADMIN_URL[model]}/"
        response = admin.post(url, {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"})
    assert response.status_code == 302, response.content[:500]
    assert not model.objects.filter(pk=obj.pk).exists()


@pytest.fixture
def phone(user: Any) -> Device:
    return Device.objects.create(owner=user, token="phone", platform="android")


def complete(task: Task) -> None:
    services.complete_task(task, by=task.owner)


def traces_of_task(task_id: Any, title: str) -> dict[str, Any]:
    task_id = str(task_id)
    return {
        "segment": StorySegment.objects.filter(subject_id=task_id).count(),
        "recalls": StorySegment.objects.filter(recalled__contains=[{"task": task_id}]).count(),
        "text": StorySegment.objects.filter(text__contains=title).count(),
        "notifications": Notification.objects.filter(data__task_id=task_id).count(),
        "receipts": PushReceipt.objects.filter(notification__data__task_id=task_id).count(),
        "memory": MemoryEntry.objects.filter(task_id=task_id).count(),
    }


NO_TRACE = {"segment": 0, "recalls": 0, "text": 0, "notifications": 0, "receipts": 0, "memory": 0}


def other_data(task: Task) -> tuple[Any, ...]:
    segment = StorySegment.objects.get(subject_id=task.pk)
    notification = Notification.objects.get(data__task_id=str(task.pk))
    return (
        segment.pk,
        segment.title,
        notification.pk,
        PushReceipt.objects.filter(notification=notification).count(),
        MemoryEntry.objects.filter(task_id=task.pk).count(),
    )


@pytest.mark.parametrize("path", ["api", "admin", "admin_bulk"])
def test_a_deleted_task_leaves_no_trace(user, phone, path) -> None:
    project = ProjectFactory(owner=user, title="Open water season")
    TaskFactory(owner=user, project=project, title="Still to do")  # keeps the project open
    gone = TaskFactory(owner=user, project=project, title="Harbour swim", description="2 km by the piers")
    MediaAttachmentFactory(task=gone, caption="cold but calm")
    kept = TaskFactory(owner=user, project=project, title="Lake swim", description="3 km across")
    complete(gone)
    seen = drain()
    complete(kept)  # later: its segment recalls the task that will be deleted
    seen = drain(seen)
    kept_segment = StorySegment.objects.get(subject_id=kept.pk)
    assert [r["task"] for r in kept_segment.recalled] == [str(gone.pk)]
    assert "Harbour swim" in kept_segment.text
    assert traces_of_task(gone.pk, "Harbour swim")["receipts"] == 1
    before = other_data(kept)

    delete(gone, path)
    assert [e.type for e in OutboxEvent.objects.filter(id__gt=seen)] == ["task.deleted"]
    drain(seen)

    assert traces_of_task(gone.pk, "Harbour swim") == NO_TRACE
    assert other_data(kept) == before
    kept_segment.refresh_from_db()
    assert (
        kept_segment.recalled == []
        and "Lake swim" in kept_segment.text
        and "3 km across" in kept_segment.text
    )


@pytest.mark.parametrize("path", ["api", "admin", "admin_bulk"])
def test_a_deleted_project_leaves_no_trace(user, phone, path) -> None:
    goal = GoalFactory(owner=user, title="Swim a mile")
    project = ProjectFactory(owner=user, goal=goal, title="Harbour season")
    orphan = TaskFactory(owner=user, project=project, title="Pier to pier")
    other = TaskFactory(
        owner=user, project=ProjectFactory(owner=user, goal=None, title="Garden"), title="Sow beans"
    )
    TaskFactory(owner=user, project=other.project)  # keeps the other project open
    complete(orphan)
    complete(other)
    seen = drain()
    assert StorySegment.objects.filter(kind="project", subject_id=project.pk).exists()
    assert Notification.objects.filter(data__project_id=str(project.pk)).exists()
    assert "Harbour season" in StorySegment.objects.get(subject_id=orphan.pk).text
    assert "Harbour season" in MemoryEntry.objects.get(task_id=orphan.pk).text
    before = other_data(other)

    delete(project, path)
    [event] = OutboxEvent.objects.filter(id__gt=seen)
    assert event.type == "project.deleted"
    assert event.payload["task_ids"] == [str(orphan.pk)] and event.payload["goal_id"] == str(goal.pk)
    drain(seen)

    assert not StorySegment.objects.filter(subject_id=project.pk).exists()
    assert not StorySegment.objects.filter(text__contains="Harbour season").exists()
    assert not Notification.objects.filter(data__project_id=str(project.pk)).exists()
    assert not PushReceipt.objects.filter(notification__data__project_id=str(project.pk)).exists()
    assert not MemoryEntry.objects.filter(text__contains="Harbour season").exists()
    # The task outlives its project: its own segment, notification and memory stay.
    assert Task.objects.get(pk=orphan.pk).project_id is None
    assert StorySegment.objects.filter(subject_id=orphan.pk).exists()
    assert MemoryEntry.objects.filter(task_id=orphan.pk).exists()
    assert other_data(other) == before


@pytest.mark.parametrize("path", ["api", "admin", "admin_bulk"])
def test_a_deleted_goal_leaves_no_trace(user, phone, path) -> None:
    goal = GoalFactory(owner=user, title="Swim a mile")
    project = ProjectFactory(owner=user, goal=goal, title="Harbour season")
    task = TaskFactory(owner=user, project=project, title="Pier to pier")
    other = TaskFactory(
        owner=user, project=ProjectFactory(owner=user, goal=None, title="Garden"), title="Sow beans"
    )
    TaskFactory(owner=user, project=other.project)
    complete(task)
    complete(other)
    seen = drain()
    assert StorySegment.objects.filter(kind="goal", subject_id=goal.pk).exists()
    assert Notification.objects.filter(data__goal_id=str(goal.pk)).exists()
    # The goal's chapter and its project's chapter name it (an LLM writer's task segment may too).
    assert StorySegment.objects.filter(text__contains="Swim a mile").count() == 2
    before = other_data(other)

    delete(goal, path)
    [event] = OutboxEvent.objects.filter(id__gt=seen)
    assert event.type == "goal.deleted" and event.payload["project_ids"] == [str(project.pk)]
    drain(seen)

    assert not StorySegment.objects.filter(subject_id=goal.pk).exists()
    assert not StorySegment.objects.filter(text__contains="Swim a mile").exists()
    assert not Notification.objects.filter(data__goal_id=str(goal.pk)).exists()
    assert not PushReceipt.objects.filter(notification__data__goal_id=str(goal.pk)).exists()
    assert not MemoryEntry.objects.filter(text__contains="Swim a mile").exists()
    # The project and its task outlive the goal, their segments too.
    assert StorySegment.objects.filter(subject_id=project.pk).exists()
    assert StorySegment.objects.filter(subject_id=task.pk).exists()
    assert other_data(other) == before


@pytest.mark.parametrize("order", ["completion_first", "delete_first"])
def test_a_delete_before_the_completions_deliveries_leaves_nothing(user, phone, order) -> None:
    """The task is deleted while its completion's deliveries are still queued: whichever of
    them runs first, the completion's find the task gone and write nothing."""
    project = ProjectFactory(owner=user)
    TaskFactory(owner=user, project=project)
    task = TaskFactory(owner=user, project=project, title="Harbour swim")
    complete(task)
    [completed] = OutboxEvent.objects.filter(type="task.completed")
    services.delete_task(Task.objects.select_related("project").get(pk=task.pk))
    [deleted] = OutboxEvent.objects.filter(type="task.deleted")
    run([completed, deleted] if order == "completion_first" else [deleted, completed])
    drain(deleted.id)
    assert traces_of_task(task.pk, "Harbour swim") == NO_TRACE


def test_a_delete_after_the_completions_deliveries_leaves_nothing(user, phone) -> None:
    project = ProjectFactory(owner=user)
    TaskFactory(owner=user, project=project)
    task = TaskFactory(owner=user, project=project, title="Harbour swim")
    complete(task)
    seen = drain()
    assert traces_of_task(task.pk, "Harbour swim") == {
        "segment": 1,
        "recalls": 0,
        "text": 1,
        "notifications": 1,
        "receipts": 1,
        "memory": 1,
    }
    services.delete_task(Task.objects.select_related("project").get(pk=task.pk))
    drain(seen)
    assert traces_of_task(task.pk, "Harbour swim") == NO_TRACE
    # A late redelivery of the completion (a replay) writes nothing back.
    run(list(OutboxEvent.objects.filter(type="task.completed")))
    assert traces_of_task(task.pk, "Harbour swim") == NO_TRACE
