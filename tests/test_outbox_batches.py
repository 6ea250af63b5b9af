"""The delivery wrapper's batch contract: what a batch handler leaves to the one-by-one pass,
`prepare` outside any transaction, and a non-atomic batch keeping what it wrote."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from outbox.delivery import run_deliveries
from outbox.errors import TransientError
from outbox.events import Event
from outbox.models import Delivery, OutboxEvent
from outbox.registry import RetryPolicy, subscriber

from . import registry as test_registry
from .deliveries import dispatched
from .testapp.models import Effect

NAME = "batch_contract"
FAST = RetryPolicy(max_retries=3, backoff=0.05, backoff_max=0.1, jitter=False)


def make_events(n: int) -> list[OutboxEvent]:
    return [
        OutboxEvent.objects.create(
            type="task.completed",
            aggregate_type="tasks_app.task",
            aggregate_id=str(i),
            payload={"version": 1},
        )
        for i in range(n)
    ]


def statuses(events: list[OutboxEvent]) -> list[str]:
    return [Delivery.objects.get(event=e, subscriber=NAME).status for e in events]


@pytest.fixture
def declare() -> Iterator[Callable[..., None]]:
    """Declare the test subscriber with the given handlers; unregistered afterwards."""
    yield lambda handler, **options: subscriber(
        NAME, events=["task.completed"], retry=FAST, task_name=f"tests.{NAME}", **options
    )(handler)
    test_registry.unregister(NAME)


@pytest.mark.django_db
def test_events_the_batch_leaves_run_one_by_one_after_it(declare) -> None:
    events = make_events(4)
    left, failing = events[1].id, events[2].id
    one_by_one: list[int] = []

    def batch(batch_events: Sequence[Event]) -> list[int]:
        for e in batch_events:
            if e.id not in (left, failing):
                Effect.objects.create(subscriber=NAME, event_id=e.id)
        return [left, failing]

    def handler(event: Event) -> None:
        one_by_one.append(event.id)
        if event.id == failing:
            raise TransientError("a device to retry")
        Effect.objects.create(subscriber=NAME, event_id=event.id)

    declare(handler, batch_handler=batch)
    assert run_deliveries(NAME, dispatched(NAME, events)) == {"succeeded": 3, "retry": 1}
    assert one_by_one == [left, failing]
    assert statuses(events) == ["succeeded", "succeeded", "pending", "succeeded"]
    assert sorted(Effect.objects.values_list("event_id", flat=True)) == sorted(
        e.id for e in events if e.id != failing
    )


@pytest.mark.django_db
def test_failures_the_batch_reports_per_event_are_recorded_without_a_second_try(declare) -> None:
    events = make_events(3)
    failing, left, one_by_one = events[0].id, events[1].id, []

    def batch(batch_events: Sequence[Event]) -> dict[int, Exception | None]:
        Effect.objects.create(subscriber=NAME, event_id=events[2].id)
        return {failing: TransientError("the writer timed out"), left: None}

    def handler(event: Event) -> None:
        one_by_one.append(event.id)

    declare(handler, batch_handler=batch)
    assert run_deliveries(NAME, dispatched(NAME, events)) == {"succeeded": 2, "retry": 1}
    assert one_by_one == [left]  # the failed one is not tried again now
    failed = Delivery.objects.get(event_id=failing)
    assert (failed.status, failed.attempts) == ("pending", 1)
    assert failed.last_error == "TransientError: the writer timed out"


@pytest.mark.django_db(transaction=True)
def test_prepare_runs_outside_any_transaction_and_its_result_reaches_the_batch(declare) -> None:
    events = make_events(2)
    seen: dict[str, Any] = {}

    def prepare(batch_events: Sequence[Event]) -> dict[int, str]:
        seen["prepare in transaction"] = connection.in_atomic_block
        return {e.id: f"draft {e.id}" for e in batch_events}

    def batch(batch_events: Sequence[Event], drafts: dict[int, str]) -> None:
        seen["batch in transaction"] = connection.in_atomic_block
        seen["drafts"] = [drafts[e.id] for e in batch_events]

    declare(lambda event: None, batch_handler=batch, prepare=prepare)
    # Even one delivery goes through prepare and the batch handler.
    assert run_deliveries(NAME, dispatched(NAME, events[:1])) == {"succeeded": 1}
    assert seen == {
        "prepare in transaction": False,
        "batch in transaction": True,
        "drafts": [f"draft {events[0].id}"],
    }


@pytest.mark.django_db
def test_a_prepare_that_raises_sends_the_batch_one_by_one(declare) -> None:
    events = make_events(3)

    def prepare(batch_events: Sequence[Event]) -> None:
        raise ConnectionError("the model server is down")

    def batch(batch_events: Sequence[Event], prepared: Any) -> None:
        raise AssertionError("never reached")

    declare(
        lambda event: Effect.objects.create(subscriber=NAME, event_id=event.id),
        batch_handler=batch,
        prepare=prepare,
    )
    assert run_deliveries(NAME, dispatched(NAME, events)) == {"succeeded": 3}
    assert Effect.objects.count() == 3


@pytest.mark.django_db
def test_a_non_atomic_batch_keeps_what_it_wrote_before_raising(declare) -> None:
    events = make_events(3)
    one_by_one: list[int] = []

    def batch(batch_events: Sequence[Event]) -> None:
        Effect.objects.create(subscriber=NAME, event_id=batch_events[0].id)  # a push's receipt, say
        raise TransientError("one device to retry")

    def handler(event: Event) -> None:
        one_by_one.append(event.id)
        if not Effect.objects.filter(event_id=event.id).exists():
            Effect.objects.create(subscriber=NAME, event_id=event.id)

    declare(handler, batch_handler=batch, atomic=False)
    assert run_deliveries(NAME, dispatched(NAME, events)) == {"succeeded": 3}
    assert one_by_one == [e.id for e in events]
    # The batch's write was kept, so the one-by-one pass did not repeat it.
    assert sorted(Effect.objects.values_list("event_id", flat=True)) == [e.id for e in events]


@pytest.mark.django_db(transaction=True)
def test_a_non_atomic_batch_whose_query_broke_the_transaction_is_rolled_back_and_redone(declare) -> None:
    events = make_events(2)

    def batch(batch_events: Sequence[Event]) -> None:
        Effect.objects.create(subscriber=NAME, event_id=batch_events[0].id)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")  # no savepoint: the transaction is now aborted

    def handler(event: Event) -> None:
        Effect.objects.get_or_create(subscriber=NAME, event_id=event.id)

    declare(handler, batch_handler=batch, atomic=False)
    assert run_deliveries(NAME, dispatched(NAME, events)) == {"succeeded": 2}
    assert sorted(Effect.objects.values_list("event_id", flat=True)) == [e.id for e in events]
    assert statuses(events) == ["succeeded", "succeeded"]


@pytest.mark.django_db(transaction=True)  # the batch's own transaction, not a test's savepoint
def test_an_atomic_batch_that_raises_leaves_nothing_behind(declare) -> None:
    events = make_events(2)

    def batch(batch_events: Sequence[Event]) -> None:
        Effect.objects.create(subscriber=NAME, event_id=batch_events[0].id)
        raise ValueError("bad batch")

    declare(lambda event: None, batch_handler=batch)
    assert run_deliveries(NAME, dispatched(NAME, events)) == {"succeeded": 2}
    assert not Effect.objects.exists()
    assert statuses(events) == ["succeeded", "succeeded"]


@pytest.mark.django_db(transaction=True)
def test_an_atomic_batch_runs_in_its_claims_transaction_without_a_savepoint(declare) -> None:
    """All of an atomic batch or none is the transaction's: a savepoint would add two round trips."""
    events = make_events(3)

    def batch(batch_events: Sequence[Event]) -> None:
        Effect.objects.bulk_create([Effect(subscriber=NAME, event_id=e.id) for e in batch_events])

    declare(lambda event: None, batch_handler=batch)
    ids = dispatched(NAME, events)
    with CaptureQueriesContext(connection) as queries:
        assert run_deliveries(NAME, ids) == {"succeeded": 3}
    assert not [q["sql"] for q in queries if "SAVEPOINT" in q["sql"]]
    assert [q["sql"] for q in queries].count("BEGIN") == 1


@pytest.mark.django_db(transaction=True)
def test_an_atomic_batch_whose_query_broke_the_transaction_is_rolled_back_and_redone(declare) -> None:
    events = make_events(2)

    def batch(batch_events: Sequence[Event]) -> None:
        Effect.objects.create(subscriber=NAME, event_id=batch_events[0].id)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")  # the claim's transaction is aborted now

    def one(event: Event) -> None:
        Effect.objects.create(subscriber=NAME, event_id=event.id)

    declare(one, batch_handler=batch)
    ids = dispatched(NAME, events)
    with CaptureQueriesContext(connection) as queries:
        assert run_deliveries(NAME, ids) == {"succeeded": 2}
    # Rolled back, not committed: PostgreSQL would turn the COMMIT of an aborted transaction into
    # a rollback anyway, but the wrapper must not count on it.
    assert [q["sql"] for q in queries].count("ROLLBACK") == 1
    assert sorted(Effect.objects.values_list("event_id", flat=True)) == [e.id for e in events]
    assert statuses(events) == ["succeeded", "succeeded"]


def test_prepare_needs_a_batch_handler() -> None:
    with pytest.raises(TypeError, match="prepare needs a batch_handler"):
        subscriber(
            "prepare_alone", events=["x"], prepare=lambda events: None, task_name="tests.prepare_alone"
        )(lambda event: None)
