"""Fair share (outbox/fairness.py): one owner's burst does not hold another owner's work behind it,
in the relay's claim and in a worker's batch, and the claim's guarantees hold as before."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from outbox import delivery, fairness, relay
from outbox.delivery import run_deliveries
from outbox.events import Event
from outbox.models import Delivery, OutboxEvent
from outbox.publish import publish
from outbox.registry import RetryPolicy, subscriber

from . import registry as test_registry
from .concurrently import concurrently
from .deliveries import owned_pending, owned_waiting
from .factories import TaskFactory, UserFactory
from .testapp.models import Effect

NAME = "fair_batch"
FAST = RetryPolicy(max_retries=3, backoff=0.05, backoff_max=0.1, jitter=False)


def pending(owner: str, n: int) -> list[OutboxEvent]:
    return owned_pending(owner, n)


def waiting(owner: str, n: int) -> list[Delivery]:
    return owned_waiting(owner, n, NAME)


@pytest.fixture
def batches() -> Iterator[list[list[Event]]]:
    """A batch subscriber that records each batch it is given (and an effect per event)."""
    seen: list[list[Event]] = []

    def one(event: Event) -> None:
        seen.append([event])
        Effect.objects.create(subscriber=NAME, event_id=event.id)

    def batch(events: Sequence[Event]) -> None:
        seen.append(list(events))
        Effect.objects.bulk_create([Effect(subscriber=NAME, event_id=e.id) for e in events])

    subscriber(NAME, events=["task.completed"], retry=FAST, task_name=f"tests.{NAME}", batch_handler=batch)(
        one
    )
    with test_registry.only(NAME):
        yield seen
    test_registry.unregister(NAME)


@pytest.fixture
def follow_ups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    monkeypatch.setattr(delivery, "_follow_up", lambda sub, coalescing, lane: sent.append(sub.name + lane))
    return sent


@pytest.fixture
def fair(settings) -> Callable[[bool], None]:
    """Fair share on (or off with switch(False)), the relay run by the test (no kicks)."""

    def switch(on: bool) -> None:
        settings.OUTBOX = {**settings.OUTBOX, "FAIR_SHARE": on, "KICK": False}

    switch(True)
    return switch


# --- who owns an event ------------------------------------------------------------------------


@pytest.mark.django_db
def test_publish_records_the_payloads_owner_and_the_key_is_configurable(settings) -> None:
    user = UserFactory()
    task = TaskFactory(owner=user)
    with transaction.atomic():
        owned = publish("task.completed", task, {"task_id": str(task.pk), "user_id": user.pk})
        unowned = publish("task.completed", task, {"task_id": str(task.pk)})
    settings.OUTBOX = {**settings.OUTBOX, "OWNER_KEY": "task_id"}
    with transaction.atomic():
        by_task = publish("task.completed", task, {"task_id": str(task.pk), "user_id": user.pk})
    assert owned.owner_key == str(user.pk)
    assert unowned.owner_key == ""  # one shared turn for events that name no owner
    assert by_task.owner_key == str(task.pk)
    assert OutboxEvent.objects.get(pk=owned.pk).owner_key == str(user.pk)


@pytest.mark.django_db
def test_the_relay_copies_the_owner_to_every_delivery(fair, use_subscribers, monkeypatch) -> None:
    use_subscribers("recorder", "second")
    monkeypatch.setattr(relay, "publish_deliveries", lambda pairs, **options: 0)
    pending("ann", 2)
    assert relay.relay_once() == 2
    assert set(Delivery.objects.values_list("owner_key", flat=True)) == {"ann"}
    assert Delivery.objects.count() == 4


# --- dealing in turns -------------------------------------------------------------------------


@pytest.mark.django_db
def test_waiting_events_are_dealt_in_turns_oldest_owner_first() -> None:
    ann, bob, cy = pending("ann", 10), pending("bob", 2), pending("cy", 1)
    dealt = fairness.dealt("events", 7)
    assert dealt == [
        (ann[0].id, "ann"),
        (bob[0].id, "bob"),
        (cy[0].id, "cy"),
        (ann[1].id, "ann"),
        (bob[1].id, "bob"),
        (ann[2].id, "ann"),
        (ann[3].id, "ann"),
    ]
    # A batch larger than the backlog takes all of it.
    assert sorted(i for i, _ in fairness.dealt("events", 100)) == sorted(e.id for e in [*ann, *bob, *cy])


@pytest.mark.django_db
def test_one_owner_waiting_is_left_to_the_callers_oldest_first_claim() -> None:
    assert fairness.dealt("events", 10) is None  # nothing waiting
    pending("ann", 5)
    assert fairness.dealt("events", 10) is None  # ann alone: oldest first is the same deal
    pending("bob", 1)
    assert fairness.dealt("events", 10) is not None


@pytest.mark.django_db
def test_a_worker_reads_one_owners_oldest_with_the_owners(fair, batches, follow_ups) -> None:
    """A worker reads before it claims: with `oldest`, one owner's deal is the owners' statement."""
    assert fairness.dealt("deliveries", 10, oldest=True, subscriber=NAME) == []
    ann = waiting("ann", 12)
    expected = [(d.id, "ann") for d in ann[:10]]
    with CaptureQueriesContext(connection) as queries:
        assert fairness.dealt("deliveries", 10, oldest=True, subscriber=NAME) == expected
    assert len(queries) == 1
    fair(True)
    with CaptureQueriesContext(connection) as queries:
        assert run_deliveries(NAME, [ann[0].id]) == {"succeeded": 12}
    before_the_claim = next(i for i, q in enumerate(queries) if "FOR UPDATE" in q["sql"])
    assert before_the_claim == 2  # the deal, then the batch's transaction (a savepoint in this test)


@pytest.mark.django_db
def test_more_owners_than_the_batch_still_move_oldest_first() -> None:
    # Past `limit` owners the skip scan stops; the oldest-first lane keeps the rest moving.
    owners = [f"user-{i:03d}" for i in range(30)]
    first = [pending(o, 1)[0] for o in reversed(owners)]  # the largest keys are the oldest
    dealt = [i for i, _ in fairness.dealt("events", 10)]
    assert dealt == [e.id for e in first[:10]]


# --- the relay's claim -----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("fair_share", [True, False])
def test_a_burst_by_one_owner_does_not_delay_another_owners_event_in_the_relay(
    fair, fair_share, use_subscribers, monkeypatch
) -> None:
    fair(fair_share)
    use_subscribers("recorder")
    monkeypatch.setattr(relay, "publish_deliveries", lambda pairs, **options: 0)
    pending("ann", 1000)  # ann's import: a thousand completions at once
    (bob,) = pending("bob", 1)  # then bob completes one task
    assert relay.relay_once(batch_size=50) == 50
    bob.refresh_from_db()
    # Taken in turns, bob's event is in the first batch; oldest first (the old claim), it
    # would wait for twenty batches of ann's.
    assert (bob.status == "dispatched") is fair_share
    assert OutboxEvent.objects.filter(owner_key="ann", status="dispatched").count() == (
        49 if fair_share else 50
    )


@pytest.mark.django_db(transaction=True)
def test_two_relays_dealing_in_turns_never_dispatch_an_event_twice(
    fair, use_subscribers, monkeypatch
) -> None:
    use_subscribers("recorder", "second")
    for owner, n in (("ann", 200), ("bob", 60), ("cy", 40)):
        pending(owner, n)
    published: list[tuple[str, int]] = []
    lock = threading.Lock()

    def record(pairs, *, express: bool = False, **options) -> int:
        if not express:  # the express lane's copies are counted by tests/test_express_lane.py
            with lock:
                published.extend(pairs)
        return 0

    monkeypatch.setattr(relay, "publish_deliveries", record)

    def relay_some() -> bool:  # a claim may come back short while the other relay holds rows
        relay.relay_once(batch_size=7)
        return not OutboxEvent.objects.filter(status="pending").exists()

    errors = concurrently(relay_some)
    assert errors == []
    assert len(published) == 600
    assert len(set(published)) == 600
    assert Delivery.objects.count() == 600
    assert not OutboxEvent.objects.filter(status="pending").exists()


# --- a worker's batch ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("fair_share", [True, False])
def test_a_burst_by_one_owner_does_not_delay_another_owners_delivery_in_a_worker(
    fair, fair_share, batches, follow_ups
) -> None:
    fair(fair_share)
    ann = waiting("ann", 300)
    (bob,) = waiting("bob", 1)
    # The message carries one of ann's deliveries; bob's waits behind 300 of ann's.
    counts = run_deliveries(NAME, [ann[0].id])
    assert counts == {"succeeded": 100}
    bob.refresh_from_db()
    if fair_share:
        # Bob's delivery is done, in a first batch of its own with ann's oldest: it did not
        # wait for the ninety-eight others of ann's that follow it in the same message.
        assert bob.status == "succeeded"
        assert [e.payload["user_id"] for e in batches[0]] == ["bob"]
        assert [len(batch) for batch in batches] == [1, 99]
        assert follow_ups == [NAME]  # ann's last 200 have a message
    else:
        assert bob.status == "dispatched"
        assert [len(batch) for batch in batches] == [100]


def test_fresh_work_goes_in_a_first_part_of_its_own() -> None:
    taken = [(1, "a"), (2, "b"), (3, "a"), (4, "c"), (5, "a"), (6, "b"), (7, "a"), (8, "a")]
    assert fairness.plan(taken) == fairness.Plan(first=[2, 4, 6], rest=[1, 3, 5, 7, 8])
    # One owner alone: one batch.
    assert fairness.plan([(1, "a"), (2, "a")]) == fairness.Plan([], [1, 2])
    assert fairness.plan([]) == fairness.Plan([], [])


@pytest.mark.django_db
def test_a_messages_own_deliveries_that_lost_their_turn_are_taken_by_the_follow_up(
    fair, batches, follow_ups
) -> None:
    ann = waiting("ann", 60)
    bob = waiting("bob", 60)
    # A message for bob's last 10: in turns, the first 100 are 50 of ann's and 50 of bob's
    # (his oldest), so his last 10 are passed over: not skipped, still waiting.
    counts = run_deliveries(NAME, [d.id for d in bob[-10:]])
    assert counts == {"succeeded": 100}
    assert follow_ups == [NAME]
    assert Delivery.objects.filter(id__in=[d.id for d in bob[-10:]], status="dispatched").count() == 10
    # The follow-up (a message with no ids of its own) takes the rest.
    assert run_deliveries(NAME, []) == {"succeeded": 20}
    assert not Delivery.objects.exclude(status="succeeded").exists()
    # Exactly one effect per event.
    assert Effect.objects.filter(subscriber=NAME).count() == 120
    assert len(set(Effect.objects.values_list("event_id", flat=True))) == 120
    assert len(ann) == 60


@pytest.mark.django_db
def test_a_duplicate_message_for_done_deliveries_reports_them_skipped(fair, batches, follow_ups) -> None:
    ann = waiting("ann", 3)
    assert run_deliveries(NAME, [d.id for d in ann]) == {"succeeded": 3}
    assert run_deliveries(NAME, [d.id for d in ann]) == {"skipped": 3}
    assert Effect.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_workers_dealing_the_same_backlog_run_each_delivery_once(fair, batches, follow_ups) -> None:
    for owner, n in (("ann", 250), ("bob", 40), ("cy", 10)):
        waiting(owner, n)

    def work_some() -> bool:
        run_deliveries(NAME, [])
        return not Delivery.objects.filter(status="dispatched").exists()

    errors = concurrently(work_some, rounds=50)
    assert errors == []
    assert Delivery.objects.filter(status="succeeded").count() == 300
    assert Effect.objects.count() == 300
    assert len(set(Effect.objects.values_list("event_id", flat=True))) == 300


def _sequential_scans_of_events() -> int:
    """Reads of the events table from end to end, by every backend, as of now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:  # a statement of its own: the flush happens after the one that asks
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'outbox_outboxevent'")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_relay_plans_for_the_outbox_as_it_is_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan the relay's connection cached while the outbox was nearly empty must not read the
    whole events table once it has grown: the foreign-key check each delivery makes at commit
    is such a plan (PostgreSQL keeps a generic one after five runs)."""
    monkeypatch.setattr(relay, "publish_deliveries", lambda pairs, **options: 0)
    with connection.cursor() as cursor:
        # No ANALYZE behind the test's back: the statistics stay those of a nearly empty table.
        cursor.execute("ALTER TABLE outbox_outboxevent SET (autovacuum_enabled = false)")
    try:
        pending("early", 1)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE outbox_outboxevent")
        assert relay.relay_once() == 1
        for _ in range(8):  # past the five runs after which PostgreSQL may keep a generic plan
            pending("early", 1)
            assert relay.relay_once() == 1
        OutboxEvent.objects.bulk_create(
            OutboxEvent(
                type="task.completed",
                aggregate_type="tasks_app.task",
                aggregate_id=f"old-{i}",
                payload={"version": 1, "user_id": "old", "task_id": f"old-{i}"},
                owner_key="old",
                status=OutboxEvent.Status.DISPATCHED,
            )
            for i in range(5000)
        )
        pending("late", 1)
        before = _sequential_scans_of_events()
        assert relay.relay_once() == 1
        assert _sequential_scans_of_events() == before
        assert Delivery.objects.filter(event__owner_key="late").exists()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE outbox_outboxevent RESET (autovacuum_enabled)")
