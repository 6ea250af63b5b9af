"""`manage.py outbox audit`: passes on a healthy outbox, names each broken invariant."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Task

from .conftest import deliver
from .factories import TaskFactory

pytestmark = pytest.mark.django_db


def audit(*options: str) -> tuple[bool, str]:
    out = StringIO()
    try:
        call_command("outbox", "audit", *options, stdout=out)
    except CommandError:
        return False, out.getvalue()
    return True, out.getvalue()


def complete_and_deliver(task: Task) -> OutboxEvent:
    services.complete_task(task, by=task.owner)
    event = OutboxEvent.objects.get(aggregate_id=str(task.pk), type="task.completed")
    OutboxEvent.objects.filter(pk=event.pk).update(status="dispatched", dispatched_at=timezone.now())
    for name in ("progress", "story", "notifications", "memory", "recorder", "second", "slow", "lost"):
        deliver(name, event)
    for name in ("flaky", "always_transient", "broken", "buggy", "fixable"):
        Delivery.objects.get_or_create(event=event, subscriber=name, defaults={"status": "succeeded"})
    return event


def test_a_healthy_outbox_passes(user) -> None:
    complete_and_deliver(TaskFactory(owner=user))
    ok, out = audit()
    assert ok, out
    assert "audit passed" in out and "dead deliveries: 0" in out


def test_a_completed_task_without_its_event_is_reported(user) -> None:
    task = TaskFactory(owner=user)
    Task.objects.filter(pk=task.pk).update(
        status="completed", completed_at=timezone.now()
    )  # bypassing the service
    ok, out = audit()
    assert not ok
    assert f"task {task.pk} completed at" in out and "has 0 task.completed events" in out


def test_a_missing_delivery_and_a_stuck_event_are_reported(user) -> None:
    event = complete_and_deliver(TaskFactory(owner=user))
    Delivery.objects.filter(event=event, subscriber="story").delete()
    stuck = complete_and_deliver(TaskFactory(owner=user))
    OutboxEvent.objects.filter(pk=stuck.pk).update(
        status="pending", created_at=timezone.now() - timedelta(hours=1)
    )
    ok, out = audit()
    assert not ok
    assert f"event {event.pk} (task.completed) has no delivery for story" in out
    assert f"event {stuck.pk} pending since" in out


def test_a_succeeded_delivery_without_its_effect_is_reported(user) -> None:
    event = complete_and_deliver(TaskFactory(owner=user))
    from workers.models import MemoryEntry, Notification, ProgressSnapshot

    ProgressSnapshot.objects.all().delete()
    Notification.objects.all().delete()
    MemoryEntry.objects.all().delete()
    ok, out = audit()
    assert not ok
    assert f"event {event.pk}: no progress snapshot" in out
    assert f"event {event.pk} (task.completed): no in-app notification" in out
    assert "is not in memory" in out


def test_dead_deliveries_are_listed_with_their_reason(user) -> None:
    event = complete_and_deliver(TaskFactory(owner=user))
    Delivery.objects.filter(event=event, subscriber="broken").update(
        status="dead", last_error="permanent error: boom"
    )
    ok, out = audit()
    assert not ok  # an event one subscriber never handled waits for an operator
    assert "dead deliveries: 1" in out
    assert "permanent error: boom" in out
    assert "audit passed" not in out
    ok, out = audit("--allow-dead")
    assert ok  # listed, but allowed on request
    assert "dead deliveries: 1" in out
    assert "audit passed" in out
