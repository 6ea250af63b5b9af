"""Retention, the `outbox` management command, the admin pages, the registry and backoff."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from outbox import dispatch, registry, retention, services
from outbox.delivery import run_deliveries
from outbox.models import Delivery, DeliveryAttempt, OutboxEvent
from outbox.outcomes import backoff_seconds
from outbox.publish import publish
from outbox.registry import DuplicateSubscriber, RetryPolicy, subscriber

from . import registry as test_registry
from . import subscribers as test_subscribers
from .factories import TaskFactory, UserFactory
from .testapp.models import Effect

pytestmark = pytest.mark.django_db


def make_event(*delivery_statuses: str, age_days: float = 0, status: str = "dispatched") -> OutboxEvent:
    task = TaskFactory()
    with transaction.atomic():
        event = publish("task.completed", task, {"task_id": str(task.pk)})
    when = timezone.now() - timedelta(days=age_days)
    OutboxEvent.objects.filter(pk=event.pk).update(status=status, created_at=when, dispatched_at=when)
    for i, s in enumerate(delivery_statuses):
        d = Delivery.objects.create(event=event, subscriber=f"sub{i}", status=s)
        DeliveryAttempt.objects.create(
            delivery=d, number=1, started_at=when, duration_ms=1, outcome="succeeded"
        )
    return event


def test_retention_deletes_only_old_fully_succeeded_events() -> None:
    old_done = make_event("succeeded", "succeeded", age_days=10)
    old_no_subscribers = make_event(age_days=10)
    old_dead = make_event("succeeded", "dead", age_days=10)
    old_waiting = make_event("pending", age_days=10)
    old_in_flight = make_event("dispatched", age_days=10)
    new_done = make_event("succeeded", age_days=1)
    old_pending_event = make_event(age_days=10, status="pending")

    assert retention.purge(older_than_days=7, batch_size=1) == 2
    remaining = set(OutboxEvent.objects.values_list("pk", flat=True))
    assert remaining == {old_dead.pk, old_waiting.pk, old_in_flight.pk, new_done.pk, old_pending_event.pk}
    assert old_done.pk not in remaining and old_no_subscribers.pk not in remaining
    assert not Delivery.objects.filter(event_id=old_done.pk).exists()
    assert not DeliveryAttempt.objects.filter(delivery__event_id=old_done.pk).exists()


def test_status_command(capsys) -> None:
    make_event("succeeded", "dead")
    make_event(status="pending")
    out = StringIO()
    call_command("outbox", "status", stdout=out)
    text = out.getvalue()
    assert "pending events: 1" in text
    assert "sub1" in text and "sub0" in text


def test_retry_command_redispatches_dead_deliveries(monkeypatch) -> None:
    published: list[tuple[str, int]] = []
    monkeypatch.setattr("outbox.dispatch.publish_deliveries", lambda pairs: published.extend(pairs))
    event = make_event("dead", "dead", "succeeded")
    out = StringIO()
    call_command("outbox", "retry", "--subscriber", "sub0", stdout=out)
    assert "re-dispatched 1 dead deliveries" in out.getvalue()
    assert [name for name, _ in published] == ["sub0"]
    statuses = dict(Delivery.objects.filter(event=event).values_list("subscriber", "status"))
    assert statuses == {"sub0": "dispatched", "sub1": "dead", "sub2": "succeeded"}
    assert Delivery.objects.get(event=event, subscriber="sub0").attempts == 0


def test_replay_command_rejects_unknown_subscriber_and_bad_dates() -> None:
    with pytest.raises(CommandError, match="no subscriber 'nope'"):
        call_command("outbox", "replay", "nope")
    with pytest.raises(CommandError, match="not an ISO datetime"):
        call_command("outbox", "replay", "recorder", "--since", "last tuesday")


def test_replay_command_creates_missing_deliveries(monkeypatch) -> None:
    published: list[tuple[str, int]] = []
    monkeypatch.setattr("outbox.dispatch.publish_deliveries", lambda pairs: published.extend(pairs))
    make_event(age_days=2)  # dispatched before `recorder` existed: no delivery for it
    make_event(age_days=0)
    out, err = StringIO(), StringIO()
    since = (timezone.now() - timedelta(days=1)).isoformat()
    call_command("outbox", "replay", "recorder", "--since", since, stdout=out, stderr=err)
    assert "replayed 1 deliveries of recorder" in out.getvalue()
    assert len(published) == 1
    assert "replay recorder" in err.getvalue()  # the progress bar


def test_replay_and_retry_leave_a_delivery_in_the_same_state(monkeypatch) -> None:
    """Both go through one re-dispatch: dispatched, a fresh budget, nothing of the old finish."""
    monkeypatch.setattr("outbox.dispatch.publish_deliveries", lambda pairs: None)
    event = make_event()
    done = Delivery.objects.create(
        event=event, subscriber="recorder", status="succeeded", attempts=2, completed_at=timezone.now()
    )
    dead = Delivery.objects.create(
        event=event, subscriber="second", status="dead", attempts=4, completed_at=timezone.now()
    )
    services.replay("recorder")
    services.retry_deliveries([dead.id])
    fields = ("status", "attempts", "completed_at", "next_attempt_at")
    assert list(Delivery.objects.filter(id__in=[done.id, dead.id]).values_list(*fields)) == [
        ("dispatched", 0, None, None),
        ("dispatched", 0, None, None),
    ]


def test_admin_pages_show_the_summary_and_attempts(client) -> None:
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    event = make_event("succeeded", "dead")
    Delivery.objects.filter(event=event, status="dead").update(last_error="permanent error: boom")
    page = client.get("/admin/outbox/delivery/")
    assert page.status_code == 200
    assert b"events waiting for the relay" in page.content
    assert b"?status__exact=dead&subscriber__exact=sub1" in page.content
    filtered = client.get("/admin/outbox/delivery/?status__exact=dead")
    assert b"permanent error: boom" in filtered.content
    delivery = Delivery.objects.get(event=event, subscriber="sub0")
    assert client.get(f"/admin/outbox/delivery/{delivery.pk}/change/").status_code == 200
    assert client.get(f"/admin/outbox/outboxevent/{event.pk}/change/").status_code == 200
    searched = client.get(f"/admin/outbox/delivery/?q={event.aggregate_id}")
    assert searched.status_code == 200 and b"sub1" in searched.content


def test_admin_is_staff_only(client) -> None:
    client.force_login(UserFactory())
    response = client.get("/admin/outbox/delivery/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_duplicate_subscriber_name_fails_at_import() -> None:
    with pytest.raises(DuplicateSubscriber):
        subscriber("recorder", events=["x"])(lambda event: None)


def test_each_subscriber_is_its_own_named_task_on_its_own_queue() -> None:
    recorder = registry.get("recorder")
    assert recorder.task.name == "tests.subscribers.recorder"
    assert recorder.queue == "test_recorder"
    assert recorder.task.acks_late and recorder.task.reject_on_worker_lost
    # However it is sent (delay() included), Celery routes it to the subscriber's queue.
    assert registry.route(recorder.task.name, (), {}, {}) == {"queue": "test_recorder"}
    assert registry.route("outbox.relay", (), {}, {}) is None


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(backoff=2, backoff_max=60, jitter=False)
    assert [backoff_seconds(policy, n) for n in (1, 2, 3, 4, 10)] == [2, 4, 8, 16, 60]
    jittered = RetryPolicy(backoff=2, backoff_max=60, jitter=True)
    assert all(4 <= backoff_seconds(jittered, 3) <= 8 for _ in range(50))


def test_a_transient_failure_schedules_a_retry_for_the_sweeper(use_subscribers) -> None:
    use_subscribers("flaky")
    event = make_event()
    delivery = Delivery.objects.create(event=event, subscriber="flaky", dispatched_at=timezone.now())
    assert run_deliveries("flaky", [delivery.id]) == {"retry": 1}
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now() - timedelta(seconds=1)
    assert delivery.last_error == "TransientError: upstream timed out"
    # A stray message for a delivery waiting for its retry does nothing.
    assert run_deliveries("flaky", [delivery.id]) == {"skipped": 1}
    assert test_subscribers.calls[("flaky", event.id)] == 1


def test_a_batch_handler_falls_back_to_one_by_one(monkeypatch) -> None:
    seen: list[list[int]] = []

    def batch(events) -> None:
        seen.append([e.id for e in events])
        raise RuntimeError("one bad apple")

    ok_event, bad_event = make_event(), make_event()

    def handler(event) -> None:
        if event.id == bad_event.id:
            raise ValueError("bad")

    subscriber("batchy", events=["task.completed"], batch_handler=batch)(handler)
    try:
        ids = [
            Delivery.objects.create(event=e, subscriber="batchy", dispatched_at=timezone.now()).id
            for e in (ok_event, bad_event)
        ]
        assert run_deliveries("batchy", ids) == {"succeeded": 1, "dead": 1}
        assert seen == [[ok_event.id, bad_event.id]]
    finally:
        test_registry.unregister("batchy")


@pytest.mark.parametrize(("budget", "claims"), [(60.0, 1), (0.0, 4)])
def test_deliveries_of_one_message_commit_in_groups_and_fail_alone(settings, budget, claims) -> None:
    """Under load a message carries many deliveries: they share a transaction (one claim,
    one success update) for up to GROUP_COMMIT_SECONDS, each in its own savepoint."""
    settings.OUTBOX = {**settings.OUTBOX, "GROUP_COMMIT_SECONDS": budget}
    events = [make_event() for _ in range(4)]
    bad = events[1]

    def grouped(event) -> None:
        Effect.objects.create(subscriber="grouped", event_id=event.id)
        if event.id == bad.id:
            raise ValueError("bad payload")  # its Effect must roll back with its savepoint

    subscriber("grouped", events=["task.completed"])(grouped)
    try:
        ids = [
            Delivery.objects.create(event=e, subscriber="grouped", dispatched_at=timezone.now()).id
            for e in events
        ]
        with CaptureQueriesContext(connection) as queries:
            assert run_deliveries("grouped", ids) == {"succeeded": 3, "dead": 1}
        assert sum("FOR UPDATE" in q["sql"] for q in queries.captured_queries) == claims
        assert sorted(Effect.objects.values_list("event_id", flat=True)) == sorted(
            e.id for e in events if e is not bad
        )
        dead = Delivery.objects.get(event=bad, subscriber="grouped")
        assert dead.status == "dead" and "ValueError: bad payload" in dead.last_error
        assert set(
            DeliveryAttempt.objects.filter(delivery__subscriber="grouped").values_list("outcome", flat=True)
        ) == {
            "succeeded",
            "dead",
        }
        assert run_deliveries("grouped", ids) == {"skipped": 4}  # a duplicate message does nothing
    finally:
        test_registry.unregister("grouped")


@pytest.mark.parametrize("take_waiting", [True, False])
def test_a_worker_takes_its_subscribers_waiting_deliveries(use_subscribers, settings, take_waiting) -> None:
    use_subscribers("recorder", "second")
    settings.OUTBOX = {**settings.OUTBOX, "TAKE_WAITING": take_waiting, "MESSAGE_BATCH_SIZE": 3}
    now = timezone.now()

    def delivery(subscriber: str, status: str = "dispatched") -> Delivery:
        return Delivery.objects.create(
            event=make_event(), subscriber=subscriber, status=status, dispatched_at=now
        )

    mine, *waiting = [delivery("recorder") for _ in range(4)]  # one more than fits a batch
    retrying = delivery("recorder", status="pending")  # waits for its retry time: not taken
    other = delivery("second")  # another subscriber's: not taken

    counts = run_deliveries("recorder", [mine.id])
    done = set(Delivery.objects.filter(status="succeeded").values_list("id", flat=True))
    if take_waiting:
        assert counts == {"succeeded": 3}
        assert done == {mine.id, waiting[0].id, waiting[1].id}  # oldest first, up to the batch size
    else:
        assert counts == {"succeeded": 1} and done == {mine.id}
    assert Delivery.objects.get(id=retrying.id).status == "pending"
    assert Delivery.objects.get(id=other.id).status == "dispatched"


def test_publishing_batches_deliveries_per_subscriber(settings, broker) -> None:
    settings.OUTBOX = {**settings.OUTBOX, "MESSAGE_BATCH_SIZE": 2}
    broker.delete("test_recorder", "test_second")
    sent = dispatch.publish_deliveries([("recorder", 1), ("recorder", 2), ("recorder", 3), ("second", 4)])
    assert sent == 3
    assert broker.llen("test_recorder") == 2 and broker.llen("test_second") == 1
    broker.delete("test_recorder", "test_second")


def test_the_outbox_tables_are_vacuumed_early() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s)",
            [["outbox_outboxevent", "outbox_delivery", "outbox_deliveryattempt"]],
        )
        options = dict(cursor.fetchall())
    assert len(options) == 3
    assert all("autovacuum_vacuum_scale_factor=0.02" in opts for opts in options.values())
