"""The whole outbox flow with a real Celery worker and real PostgreSQL, on Redis and on RabbitMQ.

Every test here runs twice, through the `celery_broker` matrix (tests/brokers.py): once on
Redis, once on RabbitMQ with quorum queues and publisher confirms.
"""

from __future__ import annotations

import threading

import pytest
from django.db import transaction
from redis import Redis
from rest_framework.test import APIClient

from outbox import dispatch, relay, services, sweeper
from outbox.models import Delivery, DeliveryAttempt, OutboxEvent
from outbox.publish import publish
from tasks_app import services as task_services

from . import subscribers as test_subscribers
from .brokers import BrokerUnderTest
from .concurrently import concurrently
from .conftest import client_for, settle
from .factories import TaskFactory, UserFactory
from .testapp.models import Effect

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_broker"),
]


def statuses(event: OutboxEvent | None = None) -> dict[str, str]:
    qs = Delivery.objects.all() if event is None else Delivery.objects.filter(event=event)
    return dict(qs.values_list("subscriber", "status"))


def effects(name: str) -> int:
    return Effect.objects.filter(subscriber=name).count()


def complete_through_api(api: APIClient, user) -> OutboxEvent:
    task = TaskFactory(owner=user)
    assert api.put(f"/api/tasks/{task.pk}/complete/").status_code == 200
    return OutboxEvent.objects.get(aggregate_id=str(task.pk), type="task.completed")


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def owner_api(owner) -> APIClient:
    return client_for(owner)


def test_a_completion_reaches_every_subscriber_exactly_once(
    celery_worker, use_subscribers, owner, owner_api
) -> None:
    use_subscribers("recorder", "second")
    event = complete_through_api(owner_api, owner)
    # No sweeper ticks: the on-commit kick alone must carry the event through.
    settle(lambda: statuses(event) == {"recorder": "succeeded", "second": "succeeded"}, sweep=False)
    event.refresh_from_db()
    assert event.status == "dispatched"
    assert effects("recorder") == 1 and effects("second") == 1
    attempts = DeliveryAttempt.objects.filter(delivery__event=event)
    assert sorted(attempts.values_list("outcome", flat=True)) == ["succeeded", "succeeded"]
    assert all(a.celery_task_id and a.worker for a in attempts)


def test_the_same_message_delivered_twice_has_one_effect(
    celery_worker, use_subscribers, owner, owner_api
) -> None:
    use_subscribers("recorder")
    first = complete_through_api(owner_api, owner)
    settle(lambda: statuses(first) == {"recorder": "succeeded"})
    delivery = Delivery.objects.get(event=first)
    # The broker hands the worker the same delivery twice more (a redelivery after
    # a lost ack, or the sweeper's re-publish racing the original message).
    dispatch.publish_deliveries([("recorder", delivery.id)] * 2)
    # A later completion queues behind them: once it is done, they were handled.
    second = complete_through_api(owner_api, owner)
    settle(lambda: statuses(second) == {"recorder": "succeeded"}, sweep=False)
    assert test_subscribers.calls[("recorder", first.id)] == 1
    assert Effect.objects.filter(subscriber="recorder", event_id=first.id).count() == 1
    assert Delivery.objects.get(pk=delivery.pk).attempts == 1


def test_transient_failures_retry_with_backoff_then_succeed(
    celery_worker, use_subscribers, owner, owner_api
) -> None:
    use_subscribers("flaky", "recorder")
    event = complete_through_api(owner_api, owner)
    settle(lambda: statuses(event) == {"flaky": "succeeded", "recorder": "succeeded"})
    delivery = Delivery.objects.get(event=event, subscriber="flaky")
    assert delivery.attempts == 3
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == ["retry", "retry", "succeeded"]
    assert effects("flaky") == 1


def test_a_permanent_error_goes_dead_at_once(celery_worker, use_subscribers, owner, owner_api) -> None:
    use_subscribers("broken", "buggy", "recorder")
    event = complete_through_api(owner_api, owner)
    settle(lambda: statuses(event) == {"broken": "dead", "buggy": "dead", "recorder": "succeeded"})
    broken = Delivery.objects.get(event=event, subscriber="broken")
    assert broken.attempts == 1
    assert broken.last_error == "permanent error: PermanentError: this payload can never work"
    buggy = Delivery.objects.get(event=event, subscriber="buggy")
    assert buggy.attempts == 1 and buggy.last_error.startswith("permanent error: KeyError")
    assert "KeyError" in buggy.attempt_log.get().traceback
    assert effects("recorder") == 1  # a failing neighbour changes nothing for the others


def test_exhausted_retries_go_dead_and_leave_no_partial_effect(
    celery_worker, use_subscribers, owner, owner_api
) -> None:
    use_subscribers("always_transient")
    event = complete_through_api(owner_api, owner)
    settle(lambda: statuses(event) == {"always_transient": "dead"})
    delivery = Delivery.objects.get(event=event)
    assert delivery.attempts == 4  # the first try and max_retries=3 retries
    assert delivery.last_error == "retries exhausted after 4 attempts: TransientError: still down"
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == ["retry"] * 3 + ["dead"]
    # Each try wrote an effect and failed: every one was rolled back with it.
    assert test_subscribers.calls[("always_transient", event.id)] == 4
    assert effects("always_transient") == 0


def test_admin_retry_reruns_a_dead_delivery(celery_worker, use_subscribers, owner, owner_api, client) -> None:
    use_subscribers("fixable")
    event = complete_through_api(owner_api, owner)
    settle(lambda: statuses(event) == {"fixable": "dead"})
    delivery = Delivery.objects.get(event=event)

    test_subscribers.healed.set()  # the operator fixed the cause
    client.force_login(UserFactory(username="operator", is_staff=True, is_superuser=True))
    response = client.post(
        "/admin/outbox/delivery/",
        {"action": "retry_selected", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert b"1 deliveries re-dispatched" in response.content
    settle(lambda: statuses(event) == {"fixable": "succeeded"})
    assert effects("fixable") == 1
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == ["dead", "succeeded"]


def test_a_slow_subscriber_does_not_hold_up_the_others(
    celery_worker, worker_process, broker: Redis, use_subscribers, owner, owner_api
) -> None:
    # As in the Procfile, a subscriber's queue has its own worker process.
    worker_process("test_slow")
    use_subscribers("slow", "recorder")
    broker.set(test_subscribers.HOLD_SLOW_KEY, 1)
    try:
        events = [complete_through_api(owner_api, owner) for _ in range(3)]
        settle(lambda: effects("recorder") == 3, timeout=10, sweep=False)
        assert effects("slow") == 0  # still held, and the recorder did not wait for it
    finally:
        broker.delete(test_subscribers.HOLD_SLOW_KEY)
    settle(lambda: effects("slow") == 3, sweep=False)
    assert all(statuses(e) == {"slow": "succeeded", "recorder": "succeeded"} for e in events)


def test_a_message_lost_by_the_broker_is_recovered_by_the_sweeper(
    start_celery_worker, celery_broker: BrokerUnderTest, use_subscribers, owner
) -> None:
    use_subscribers("lost")
    task = TaskFactory(owner=owner)
    task_services.complete_task(task, by=owner)
    assert relay.relay_once() == 1
    assert celery_broker.depth("test_lost") == 1
    celery_broker.drop("test_lost")  # a broker restarted without persistence

    start_celery_worker("outbox", "test_lost")
    delivery = Delivery.objects.get()
    assert delivery.status == "dispatched"
    assert sweeper.sweep(lease_seconds=60) == {"retries": 0, "expired": 0}  # lease not over yet
    assert sweeper.sweep(lease_seconds=0) == {"retries": 0, "expired": 1}
    settle(lambda: Delivery.objects.get().status == "succeeded", sweep=False)
    assert effects("lost") == 1


def test_deliveries_still_queued_behind_a_backlog_are_not_published_twice(
    celery_broker: BrokerUnderTest, use_subscribers, owner, settings
) -> None:
    use_subscribers("recorder", "second")
    settings.OUTBOX = {**settings.OUTBOX, "KICK": False, "LEASE_MAX_SECONDS": 3600}
    for task in TaskFactory.create_batch(2, owner=owner):
        task_services.complete_task(task, by=owner)
    assert relay.relay_once() == 2
    celery_broker.drop("test_second")  # second's messages are lost; recorder's wait in its queue
    assert celery_broker.depth("test_recorder") == 1

    # Past the lease, only the lost ones are re-published: the waiting ones are late, not lost.
    assert sweeper.sweep(lease_seconds=0) == {"retries": 0, "expired": 2}
    assert celery_broker.depth("test_recorder") == 1 and celery_broker.depth("test_second") == 1
    waiting = Delivery.objects.filter(subscriber="recorder")
    assert set(waiting.values_list("status", flat=True)) == {"dispatched"}

    # Past the long lease, a queue that never empties cannot hide a lost message either.
    settings.OUTBOX = {**settings.OUTBOX, "LEASE_MAX_SECONDS": 0}
    assert sweeper.sweep(lease_seconds=0) == {"retries": 0, "expired": 4}


def test_a_relay_that_dies_after_commit_loses_nothing(
    celery_worker, use_subscribers, owner, monkeypatch, settings
) -> None:
    use_subscribers("recorder")
    settings.OUTBOX = {**settings.OUTBOX, "KICK": False}  # this test runs the relay itself
    task_services.complete_task(TaskFactory(owner=owner), by=owner)

    def die(*args, **kwargs):
        raise SystemExit("relay killed")

    monkeypatch.setattr(relay, "publish_deliveries", die)
    with pytest.raises(SystemExit):
        relay.relay_once()
    assert statuses() == {"recorder": "dispatched"}  # committed, never published
    monkeypatch.undo()
    assert sweeper.sweep(lease_seconds=0) == {"retries": 0, "expired": 1}
    settle(lambda: statuses() == {"recorder": "succeeded"}, sweep=False)
    assert effects("recorder") == 1


def test_a_malformed_event_goes_dead_with_a_clear_reason(celery_worker, use_subscribers, owner) -> None:
    use_subscribers("recorder")
    with transaction.atomic():
        publish("task.completed", TaskFactory(owner=owner), {"task_id": "x"}, version=99)
        publish("task.completed", TaskFactory(owner=owner), {"nothing": "useful"})
    settle(lambda: Delivery.objects.filter(status="dead").count() == 2)
    errors = sorted(Delivery.objects.values_list("last_error", flat=True))
    assert errors == [
        "permanent error: PermanentError: task.completed payload lacks task_id",
        "permanent error: PermanentError: unsupported task.completed payload version 99 (handler reads 1)",
    ]


def test_two_relays_at_once_never_dispatch_an_event_twice(use_subscribers, owner, monkeypatch) -> None:
    use_subscribers("recorder", "second")
    tasks = TaskFactory.create_batch(5, owner=owner)
    with transaction.atomic():
        for i in range(300):
            publish("task.completed", tasks[i % 5], {"task_id": str(tasks[i % 5].pk)})
    published: list[tuple[str, int]] = []
    lock = threading.Lock()

    def record(pairs, **options):
        with lock:
            published.extend(pairs)
        return 0

    monkeypatch.setattr(relay, "publish_deliveries", record)
    errors = concurrently(lambda: relay.relay_once(batch_size=7) == 0, rounds=1000)
    assert errors == []
    assert len(published) == 600
    assert len(set(published)) == 600
    assert Delivery.objects.count() == 600
    assert not OutboxEvent.objects.filter(status="pending").exists()


def test_replay_reruns_one_subscriber_and_changes_nothing_idempotent(
    celery_worker, use_subscribers, owner, owner_api
) -> None:
    use_subscribers("recorder", "second")
    event = complete_through_api(owner_api, owner)
    settle(lambda: statuses(event) == {"recorder": "succeeded", "second": "succeeded"})
    assert services.replay("recorder") == 1
    settle(lambda: test_subscribers.calls[("recorder", event.id)] == 2, sweep=False)
    settle(lambda: statuses(event) == {"recorder": "succeeded", "second": "succeeded"}, sweep=False)
    assert test_subscribers.calls[("second", event.id)] == 1
