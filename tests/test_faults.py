"""Faults with real processes: a worker killed mid-handler (Redis and RabbitMQ), a database down."""

import os
import signal

import pytest
from django.db import connections
from redis import Redis
from rest_framework.test import APIClient

from outbox import sweeper
from outbox.models import Delivery
from tasks_app import services

from . import subscribers as test_subscribers
from .brokers import BrokerUnderTest
from .conftest import client_for, settle
from .factories import TaskFactory, UserFactory
from .testapp.models import Effect

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_mid_handler_loses_nothing_and_duplicates_nothing(
    celery_broker: BrokerUnderTest, celery_worker, worker_process, broker: Redis, use_subscribers
) -> None:
    use_subscribers("slow")
    doomed = worker_process("test_slow")
    broker.set(test_subscribers.HOLD_SLOW_KEY, 1)  # the handler will be mid-way when we kill it
    broker.delete(test_subscribers.SLOW_RUNNING_KEY)
    user = UserFactory()
    tasks = TaskFactory.create_batch(3, owner=user)
    for task in tasks:
        services.complete_task(task, by=user)
    settle(lambda: Delivery.objects.filter(subscriber="slow").count() == 3, sweep=False)
    settle(lambda: broker.exists(test_subscribers.SLOW_RUNNING_KEY), sweep=False)  # a handler is mid-way

    os.killpg(doomed.process.pid, signal.SIGKILL)  # kill -9, parent and pool children
    doomed.process.wait(10)
    assert Effect.objects.count() == 0  # its transaction died with it
    assert set(Delivery.objects.values_list("status", flat=True)) == {"dispatched"}

    broker.delete(test_subscribers.HOLD_SLOW_KEY)
    worker_process("test_slow")
    if celery_broker.kind == "redis":
        # Redis gives the dead worker's unacknowledged message back only after the visibility
        # timeout (an hour): the sweeper re-publishes what was dispatched and never finished
        # (lease forced to 0 here).
        sweeper.sweep(lease_seconds=0)
    # RabbitMQ took the message back the moment the dead worker's connection closed: the new
    # worker runs it with no help from the sweeper.
    settle(lambda: set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}, sweep=False)
    assert sorted(Effect.objects.values_list("event_id", flat=True)) == sorted(
        Delivery.objects.values_list("event_id", flat=True)
    )  # one effect per event, none twice


def test_the_api_answers_a_json_503_while_the_database_is_down() -> None:
    user = UserFactory()
    api: APIClient = client_for(user)
    task = TaskFactory(owner=user)
    conn = connections["default"]
    saved = {k: conn.settings_dict[k] for k in ("HOST", "PORT", "OPTIONS")}
    conn.close()
    conn.settings_dict.update(HOST="127.0.0.1", PORT="1", OPTIONS={"connect_timeout": 1})
    try:
        down = {"detail": "The database is unavailable; try again shortly.", "code": "database_unavailable"}
        for method, path, expected in (
            ("get", "/api/tasks/", down),
            ("put", f"/api/tasks/{task.pk}/complete/", down),
            ("get", "/readyz", {"status": "unavailable", "failed": ["database"]}),
        ):
            response = getattr(api, method)(path)
            assert response.status_code == 503, (path, response.content[:200])
            assert response["Content-Type"].startswith("application/json")
            assert response.json() == expected
    finally:
        conn.close()
        conn.settings_dict.update(saved)
    task.refresh_from_db()
    assert task.status == "todo"  # the failed completion changed nothing
    assert api.put(f"/api/tasks/{task.pk}/complete/").status_code == 200  # and works once it is back
