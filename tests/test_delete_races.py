"""Deleting outbox events while a worker runs one of their deliveries: the delete waits for the
run and takes the attempt it recorded, instead of failing on that attempt's foreign key."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from outbox.models import Delivery, DeliveryAttempt, OutboxEvent
from outbox.retention import delete_events
from tasks_app import services

from .factories import TaskFactory

pytestmark = pytest.mark.django_db(transaction=True)


def waits_on_a_lock(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


def test_deleting_events_waits_for_a_running_delivery_and_takes_its_attempt(user) -> None:
    task = TaskFactory(owner=user)
    services.complete_task(task, by=user)
    event = OutboxEvent.objects.get(type="task.completed")
    delivery = Delivery.objects.create(event=event, subscriber="progress", status="dispatched")
    locked, release = threading.Event(), threading.Event()
    deleter_pid: list[int] = []
    outcome: dict[str, object] = {}

    def worker() -> None:
        """What the delivery wrapper does: lock the delivery, run, record the attempt, commit."""
        try:
            with transaction.atomic():
                Delivery.objects.select_for_update().get(pk=delivery.pk)
                locked.set()
                release.wait(10)
                DeliveryAttempt.objects.create(
                    delivery_id=delivery.pk,
                    number=1,
                    started_at=timezone.now(),
                    duration_ms=1.0,
                    outcome="succeeded",
                )
                Delivery.objects.filter(pk=delivery.pk).update(status="succeeded")
        finally:
            connection.close()

    def deleter() -> None:
        try:
            connection.ensure_connection()
            deleter_pid.append(connection.connection.info.backend_pid)
            with transaction.atomic():
                outcome["deleted"] = delete_events([event.pk])
        except Exception as exc:  # noqa: BLE001 - the failure is what the test looks for
            outcome["error"] = exc
        finally:
            connection.close()

    running = threading.Thread(target=worker)
    running.start()
    assert locked.wait(10)
    deleting = threading.Thread(target=deleter)
    deleting.start()
    deadline = time.monotonic() + 10
    while not (deleter_pid and waits_on_a_lock(deleter_pid[0])):
        assert time.monotonic() < deadline, "the delete never waited for the running delivery"
        time.sleep(0.02)
    release.set()  # the worker records its attempt and commits while the delete waits
    running.join(10)
    deleting.join(10)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["deleted"] == 1
    assert not Delivery.objects.filter(pk=delivery.pk).exists()
    assert not DeliveryAttempt.objects.filter(delivery_id=delivery.pk).exists()
