"""Database and broker faults are transient: deliveries wait and retry, and never go dead for them.

Dead is for events a handler refuses. A PostgreSQL restart, a failover, a killed backend
or a broker that was briefly away must leave every delivery to be run again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import kombu.exceptions
import psycopg
import pytest
import redis.exceptions
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from outbox.delivery import run_deliveries
from outbox.errors import PermanentError, TransientError, is_infrastructure_fault
from outbox.models import Delivery, DeliveryAttempt, OutboxEvent
from outbox.publish import publish
from outbox.registry import RetryPolicy, subscriber

from . import registry as test_registry
from .conftest import settle
from .factories import TaskFactory
from .testapp.models import Effect

EVENT = "test.infrastructure"  # an event type of its own: no other subscriber takes it
STRICT = RetryPolicy(max_retries=1, backoff=0.01, backoff_max=0.02, jitter=False, retry_for=())


def make_event() -> OutboxEvent:
    task = TaskFactory()
    with transaction.atomic():
        return publish(EVENT, task, {"task_id": str(task.pk)})


@pytest.fixture
def declare() -> Iterator[Callable[..., None]]:
    """Declare a subscriber of EVENT for one test; forgotten afterwards."""
    names: list[str] = []

    def declare_(name: str, handler: Callable[..., None], **options: object) -> None:
        subscriber(name, events=[EVENT], queue=f"test_{name}", retry=STRICT, **options)(handler)
        names.append(name)

    yield declare_
    for name in names:
        test_registry.unregister(name)


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("server closed the connection unexpectedly"),
        InterfaceError("connection already closed"),
        psycopg.OperationalError("consuming input failed"),
        psycopg.InterfaceError("the connection is closed"),
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379"),
    ],
    ids=lambda exc: f"{type(exc).__module__}.{type(exc).__name__}",
)
def test_database_and_broker_errors_are_transient_whatever_the_policy_lists(exc: Exception) -> None:
    assert is_infrastructure_fault(exc)
    assert STRICT.is_transient(exc)  # retry_for=() names nothing of its own


@pytest.mark.parametrize(
    "exc",
    [IntegrityError("duplicate key"), PermanentError("bad payload"), KeyError("task_id"), ValueError("x")],
    ids=lambda exc: type(exc).__name__,
)
def test_the_handlers_own_errors_stay_permanent(exc: Exception) -> None:
    assert not is_infrastructure_fault(exc)
    assert not STRICT.is_transient(exc)


@pytest.mark.django_db
def test_a_server_error_in_a_handler_is_retried_even_past_max_retries(declare) -> None:
    """A statement the server cancels (as on failover, or a statement timeout) is not the event's
    fault: with the retries long used up, the delivery still waits for another try."""

    def cancelled(event: object) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 1")
            cursor.execute("SELECT pg_sleep(0.5)")

    declare("cancelled", cancelled)
    delivery = Delivery.objects.create(
        event=make_event(), subscriber="cancelled", dispatched_at=timezone.now(), attempts=7
    )
    assert run_deliveries("cancelled", [delivery.id]) == {"retry": 1}
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.attempts == 8
    assert delivery.next_attempt_at is not None
    assert delivery.last_error.startswith("OperationalError: canceling statement due to statement timeout")

    # The same run, for an error of the handler's own, past max_retries: dead at once.
    def refusing(event: object) -> None:
        raise PermanentError("no such task")

    declare("refusing", refusing)
    refused = Delivery.objects.create(event=make_event(), subscriber="refusing", dispatched_at=timezone.now())
    assert run_deliveries("refusing", [refused.id]) == {"dead": 1}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "non-atomic"])
def test_a_database_blip_mid_handler_is_retried_not_dead(
    declare, celery_broker, start_celery_worker, atomic: bool
) -> None:
    """The handler's own backend is terminated under it (what a PostgreSQL restart or a
    crashed backend does): the wrapper cannot even record the failure in that transaction.
    The message comes back as soon as the database answers, and the delivery succeeds once.
    On RabbitMQ that retry goes through Celery's native delayed delivery (quorum queues)."""
    tries: Counter[int] = Counter()

    def blip(event: object) -> None:
        event_id = event.id  # type: ignore[attr-defined]
        tries[event_id] += 1
        if tries[event_id] == 1:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        Effect.objects.create(subscriber="blip", event_id=event_id)

    declare("blip", blip, atomic=atomic)
    start_celery_worker("outbox", "test_blip")
    events = [make_event() for _ in range(3)]
    settle(
        lambda: Delivery.objects.filter(subscriber="blip", status=Delivery.Status.SUCCEEDED).count() == 3,
        timeout=30,
        sweep=False,  # no lease expiry, no sweeper: the message's own retry must bring it back
    )
    assert not Delivery.objects.filter(status=Delivery.Status.DEAD).exists()
    assert sorted(Effect.objects.filter(subscriber="blip").values_list("event_id", flat=True)) == sorted(
        e.id for e in events
    )  # one effect per event: the blipped run left nothing behind
    assert tries[events[0].id] >= 2  # the first event's handler really was cut off once
    assert not DeliveryAttempt.objects.filter(outcome=DeliveryAttempt.Outcome.DEAD).exists()


@pytest.mark.django_db
def test_tries_the_database_cut_short_do_not_use_up_the_handlers_own_retries(declare) -> None:
    """Three tries lost to a database fault, then one failure of the handler's own: with one
    retry allowed, that failure is its first, so it is retried, not dead."""

    def upstream_down(event: object) -> None:
        raise TransientError("upstream timed out")

    subscriber(
        "after_outage",
        events=[EVENT],
        queue="test_after_outage",
        retry=RetryPolicy(max_retries=1, backoff=0.01, backoff_max=0.02, jitter=False),
    )(upstream_down)
    try:
        delivery = Delivery.objects.create(
            event=make_event(),
            subscriber="after_outage",
            dispatched_at=timezone.now(),
            attempts=3,
            infrastructure_faults=3,
        )
        assert run_deliveries("after_outage", [delivery.id]) == {"retry": 1}
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.infrastructure_faults) == ("pending", 4, 3)
        # A second failure of its own is one too many.
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.DISPATCHED)
        assert run_deliveries("after_outage", [delivery.id]) == {"dead": 1}
    finally:
        test_registry.unregister("after_outage")
