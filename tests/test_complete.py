"""The write side: completing a task writes the change and its event in one transaction."""

import json

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from outbox import publish as publish_module
from outbox import tasks as outbox_tasks
from outbox.models import OutboxEvent
from outbox.publish import OutsideTransaction, kick_relay, publish
from tasks_app import services
from tasks_app.models import Task

from .factories import TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_complete_marks_the_task_and_writes_one_event(api: APIClient, user) -> None:
    task = TaskFactory(owner=user)
    response = api.put(f"/api/tasks/{task.pk}/complete/")
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    task.refresh_from_db()
    assert task.status == "completed" and task.completed_at is not None

    event = OutboxEvent.objects.get()
    assert (event.type, event.version, event.status) == ("task.completed", 1, "pending")
    assert (event.aggregate_type, event.aggregate_id) == ("tasks_app.task", str(task.pk))
    assert event.payload == {
        "type": "task.completed",
        "version": 1,
        "task_id": str(task.pk),
        "user_id": user.pk,
        "project_id": str(task.project_id),
        "goal_id": str(task.project.goal_id),
        "completed_at": task.completed_at.isoformat(),
    }
    # Payloads are plain JSON: they survive the round trip unchanged.
    assert json.loads(json.dumps(event.payload)) == event.payload


def test_completing_twice_writes_no_second_event(api: APIClient, user) -> None:
    task = TaskFactory(owner=user)
    first = api.put(f"/api/tasks/{task.pk}/complete/").json()
    second = api.put(f"/api/tasks/{task.pk}/complete/")
    assert second.status_code == 200
    assert second.json()["completed_at"] == first["completed_at"]
    assert OutboxEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "suffix"), [("post", "/complete/"), ("put", "/complete"), ("post", "/complete")]
)
def test_complete_accepts_post_and_the_seed_path(api: APIClient, user, method: str, suffix: str) -> None:
    task = TaskFactory(owner=user)
    response = getattr(api, method)(f"/api/tasks/{task.pk}{suffix}")
    assert response.status_code == 200
    assert OutboxEvent.objects.filter(type="task.completed").count() == 1


def test_complete_is_not_allowed_with_get(api: APIClient, user) -> None:
    task = TaskFactory(owner=user)
    assert api.get(f"/api/tasks/{task.pk}/complete/").status_code == 405
    assert not OutboxEvent.objects.exists()


def test_an_error_before_commit_leaves_neither_completion_nor_event(user, monkeypatch) -> None:
    task = TaskFactory(owner=user)

    def publish_then_fail(*args, **kwargs):
        publish(*args, **kwargs)
        raise RuntimeError("process died before commit")

    monkeypatch.setattr(services, "publish", publish_then_fail)
    with pytest.raises(RuntimeError):
        services.complete_task(task, by=user)
    task.refresh_from_db()
    assert task.status == "todo" and task.completed_at is None
    assert not OutboxEvent.objects.exists()


def test_the_relay_is_kicked_once_on_commit(user, django_capture_on_commit_callbacks) -> None:
    tasks = TaskFactory.create_batch(2, owner=user)
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        for task in tasks:
            services.complete_task(task, by=user)
    assert callbacks == [kick_relay]


def test_no_kick_when_the_transaction_rolls_back(user, django_capture_on_commit_callbacks) -> None:
    task = TaskFactory(owner=user)
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        services.complete_task(task, by=user)
        raise RuntimeError("rolled back")
    assert callbacks == []
    assert not OutboxEvent.objects.exists()


def test_a_failed_kick_loses_nothing(
    api: APIClient, user, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(outbox_tasks.relay, "apply_async", broker_down)
    task = TaskFactory(owner=user)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.put(f"/api/tasks/{task.pk}/complete/")
    assert response.status_code == 200
    assert OutboxEvent.objects.get().status == "pending"  # the beat-driven relay will take it


@pytest.mark.django_db(transaction=True)  # real commits, so on-commit kicks really fire
def test_kicks_coalesce_while_a_relay_run_is_queued(broker, use_subscribers) -> None:
    use_subscribers()  # none: the relay below publishes nothing to the other tests' queues
    user = UserFactory()
    broker.delete("outbox")
    for task in TaskFactory.create_batch(3, owner=user):
        services.complete_task(task, by=user)  # three transactions, three commits
    assert broker.llen("outbox") == 1  # one queued run will see all three events

    outbox_tasks.relay()  # the run starts: it clears the mark, then claims
    assert not OutboxEvent.objects.filter(status="pending").exists()
    services.complete_task(TaskFactory(owner=user), by=user)
    assert broker.llen("outbox") == 2  # a commit after the run began gets a run of its own
    broker.delete("outbox")


@pytest.mark.django_db(transaction=True)
def test_a_failed_kick_does_not_hold_the_next_one_back(broker, monkeypatch) -> None:
    user = UserFactory()
    broker.delete("outbox")
    real_apply_async = outbox_tasks.relay.apply_async

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(outbox_tasks.relay, "apply_async", broker_down)
    services.complete_task(TaskFactory(owner=user), by=user)
    assert broker.llen("outbox") == 0
    monkeypatch.setattr(outbox_tasks.relay, "apply_async", real_apply_async)
    services.complete_task(TaskFactory(owner=user), by=user)
    assert broker.llen("outbox") == 1
    broker.delete("outbox")


def test_publish_refuses_to_run_outside_a_transaction(user) -> None:
    task = TaskFactory(owner=user)
    # pytest-django wraps the test in a transaction; leave it to see the real check.
    with pytest.raises(OutsideTransaction):
        publish_module.transaction.get_connection().in_atomic_block = False
        try:
            publish("task.completed", task, {"task_id": str(task.pk)})
        finally:
            publish_module.transaction.get_connection().in_atomic_block = True


def test_publish_rejects_a_payload_json_cannot_carry(user) -> None:
    task = TaskFactory(owner=user)
    with pytest.raises(TypeError), transaction.atomic():
        publish("task.completed", task, {"task": task})


def test_reopening_a_completed_task_records_an_event(api: APIClient, user) -> None:
    task = TaskFactory(owner=user)
    api.put(f"/api/tasks/{task.pk}/complete/")
    response = api.patch(f"/api/tasks/{task.pk}/", {"status": "todo"})
    assert response.status_code == 200
    assert response.json()["status"] == "todo" and response.json()["completed_at"] is None
    assert list(OutboxEvent.objects.order_by("id").values_list("type", flat=True)) == [
        "task.completed",
        "task.reopened",
    ]
    assert Task.objects.get(pk=task.pk).completed_at is None
