"""The express lane (outbox/express.py): during a burst, a light owner's deliveries go to their
subscriber's express queue, which a worker of its own takes, so they do not wait behind the
burst's batches; without a burst nothing changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outbox import relay
from outbox.delivery import run_deliveries
from outbox.models import Delivery, OutboxEvent

from .conftest import settle
from .deliveries import owned_pending, owned_waiting
from .testapp.models import Effect

pytestmark = pytest.mark.django_db


def pending(owner: str, n: int) -> list[OutboxEvent]:
    return owned_pending(owner, n)


def waiting(owner: str, n: int, express: bool = False) -> list[Delivery]:
    """A backlog, when many: `owner`'s deliveries for `recorder`, dispatched."""
    return owned_waiting(owner, n, "recorder", express=express)


def record_publishes(settings, monkeypatch) -> dict[str, list[int]]:
    """The relay's publishes by lane ("main", "express"); the relay run by the test."""
    settings.OUTBOX = {**settings.OUTBOX, "KICK": False, "EXPRESS_BACKLOG": 100, "EXPRESS_OWNER_LIMIT": 10}
    # (a threshold of 100 here, so the tests' numbers read plainly; the default is lower)
    lanes: dict[str, list[int]] = {"main": [], "express": []}

    def record(pairs, *, coalesce: bool = False, express: bool = False) -> int:
        lanes["express" if express else "main"].extend(i for _, i in pairs)
        return 1

    monkeypatch.setattr(relay, "publish_deliveries", record)
    return lanes


@pytest.fixture
def published(settings, monkeypatch, use_subscribers) -> Iterator[dict[str, list[int]]]:
    """The relay's publishes by lane, with one subscriber (recorder)."""
    use_subscribers("recorder")
    yield record_publishes(settings, monkeypatch)


@pytest.fixture
def published_for_two(settings, monkeypatch, use_subscribers) -> Iterator[dict[str, list[int]]]:
    """The relay's publishes by lane, with two subscribers (recorder and second)."""
    use_subscribers("recorder", "second")
    yield record_publishes(settings, monkeypatch)


def delivery_of(event: OutboxEvent) -> Delivery:
    return Delivery.objects.get(event=event, subscriber="recorder")


def test_without_a_backlog_every_delivery_takes_the_subscribers_own_queue(published) -> None:
    waiting("ann", 100)  # at the threshold, not over it
    (bob,) = pending("bob", 1)
    assert relay.relay_once() == 1
    assert not delivery_of(bob).express
    assert published == {"main": [delivery_of(bob).id], "express": []}


def test_during_a_burst_a_light_owners_delivery_takes_the_express_lane(published) -> None:
    waiting("ann", 150)  # ann's burst
    (bob,) = pending("bob", 1)
    (ann,) = pending("ann", 1)
    assert relay.relay_once() == 2
    assert delivery_of(bob).express and not delivery_of(ann).express
    # Both go to the subscriber's own queue as always; bob's to the express queue as well.
    assert sorted(published["main"]) == sorted([delivery_of(ann).id, delivery_of(bob).id])
    assert published["express"] == [delivery_of(bob).id]


@pytest.mark.parametrize(("already", "express"), [(9, True), (10, False)])
def test_an_owner_past_its_limit_waits_in_the_main_lane(published, already: int, express: bool) -> None:
    waiting("ann", 150)
    waiting("bob", already)
    (bob,) = pending("bob", 1)  # with the ones waiting: 10 (light) or 11 (past the limit of 10)
    relay.relay_once()
    assert delivery_of(bob).express is express


def test_one_backlogged_subscriber_opens_the_lane_for_a_light_owners_deliveries_of_every_subscriber(
    published_for_two,
) -> None:
    """Subscribers share worker processes (the Procfile's `worker`): a burst in one subscriber's
    queue holds the others' messages behind its batches, so the lane takes all of bob's."""
    owned_waiting("ann", 150, "recorder")  # ann's burst, for recorder only; second is idle
    (bob,) = pending("bob", 1)
    relay.relay_once()
    theirs = Delivery.objects.filter(event=bob)
    assert sorted(d.subscriber for d in theirs if d.express) == ["recorder", "second"]
    assert sorted(published_for_two["express"]) == sorted(d.id for d in theirs)


def test_an_owner_past_its_limit_for_one_subscriber_waits_in_the_main_lane_for_all(
    published_for_two,
) -> None:
    owned_waiting("ann", 150, "recorder")
    owned_waiting("bob", 10, "second")  # bob's own backlog, for second only
    (bob,) = pending("bob", 1)
    relay.relay_once()
    assert not Delivery.objects.filter(event=bob, express=True).exists()
    assert published_for_two["express"] == []


def test_with_no_subscriber_backlogged_nothing_takes_the_lane(published_for_two) -> None:
    owned_waiting("ann", 100, "recorder")  # at the threshold, not over it
    owned_waiting("ann", 100, "second")
    (bob,) = pending("bob", 1)
    relay.relay_once()
    assert not Delivery.objects.filter(event=bob, express=True).exists()


def test_the_lane_can_be_turned_off(published, settings) -> None:
    settings.OUTBOX = {**settings.OUTBOX, "EXPRESS_LANE": False}
    waiting("ann", 150)
    (bob,) = pending("bob", 1)
    relay.relay_once()
    assert not delivery_of(bob).express
    assert published["express"] == []


def test_an_express_message_runs_the_express_deliveries_not_the_burst(use_subscribers) -> None:
    use_subscribers("recorder")
    burst = waiting("ann", 150)
    others = waiting("bob", 2, express=True)
    (own,) = waiting("cy", 1, express=True)
    assert run_deliveries("recorder", [own.id], express=True) == {"succeeded": 3}
    done = set(Delivery.objects.filter(status="succeeded").values_list("id", flat=True))
    assert done == {own.id, *(d.id for d in others)}
    assert not Delivery.objects.filter(id__in=[d.id for d in burst], status="succeeded").exists()


@pytest.mark.django_db(transaction=True)
def test_a_worker_on_the_express_queue_alone_delivers_a_light_owners_event_during_a_burst(
    settings, use_subscribers, start_celery_worker
) -> None:
    settings.OUTBOX = {**settings.OUTBOX, "KICK": False, "EXPRESS_BACKLOG": 100}
    use_subscribers("recorder")
    burst = waiting("ann", 150)
    (bob,) = pending("bob", 1)
    start_celery_worker("test_recorder.express")  # nobody takes the subscriber's own queue
    assert relay.relay_once() == 1
    settle(lambda: delivery_of(bob).status == "succeeded", timeout=20, sweep=False)
    assert Effect.objects.filter(subscriber="recorder", event_id=bob.id).count() == 1
    # The burst waits for the subscriber's own workers; the express worker took none of it.
    assert Delivery.objects.filter(id__in=[d.id for d in burst], status="dispatched").count() == 150
