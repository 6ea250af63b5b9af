"""One queued message per subscriber (outbox/coalesce.py): while a subscriber's message waits,
the relay sends it no other, and the waiting one takes what accumulated; nothing is left behind."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from outbox import coalesce, dispatch, relay
from outbox.delivery import run_deliveries
from outbox.models import Delivery
from tasks_app import services

from .factories import TaskFactory
from .testapp.models import Effect

pytestmark = pytest.mark.django_db
QUEUE = "test_recorder"


@pytest.fixture(autouse=True)
def _recorder_only(use_subscribers: Any, broker: Any, settings: Any) -> Any:
    use_subscribers("recorder")
    settings.OUTBOX = {**settings.OUTBOX, "KICK": False, "COALESCE_MESSAGES": True, "TAKE_WAITING": True}
    broker.delete(QUEUE)
    cache.delete("outbox:message-queued:recorder")
    yield
    broker.delete(QUEUE)


def queued_ids(broker: Any) -> list[list[int]]:
    """The delivery ids each queued message of the recorder carries (its first argument)."""
    messages = [json.loads(raw) for raw in broker.lrange(QUEUE, 0, -1)]
    return [json.loads(base64.b64decode(m["body"]))[0][0] for m in messages]


def complete_one(owner: Any) -> None:
    services.complete_task(TaskFactory(owner=owner), by=owner)
    relay.relay_once()


def test_relay_runs_while_a_message_waits_send_no_other_and_it_takes_them_all(user, broker) -> None:
    for _ in range(3):
        complete_one(user)
    assert broker.llen(QUEUE) == 1  # the first run's message; the next two were coalesced into it
    (ids,) = queued_ids(broker)
    assert run_deliveries("recorder", ids) == {"succeeded": 3}
    assert Effect.objects.filter(subscriber="recorder").count() == 3


def test_once_the_worker_has_started_the_next_run_sends_a_message(user, broker) -> None:
    complete_one(user)
    coalesce.started("recorder")  # what the worker does first
    complete_one(user)
    assert broker.llen(QUEUE) == 2


def test_a_worker_that_fills_its_batch_sends_a_message_for_the_rest(user, broker, settings) -> None:
    settings.OUTBOX = {**settings.OUTBOX, "MESSAGE_BATCH_SIZE": 2}
    for _ in range(3):
        complete_one(user)
    (ids,) = queued_ids(broker)
    broker.delete(QUEUE)
    assert run_deliveries("recorder", ids) == {"succeeded": 2}
    assert broker.llen(QUEUE) == 1  # a follow-up, for the third
    (rest,) = queued_ids(broker)
    assert run_deliveries("recorder", rest) == {"succeeded": 1}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}


@pytest.mark.parametrize("option", ["COALESCE_MESSAGES", "TAKE_WAITING"])
def test_without_coalescing_or_taking_waiting_every_run_sends_its_message(
    user, broker, settings, option
) -> None:
    settings.OUTBOX = {**settings.OUTBOX, option: False}
    for _ in range(3):
        complete_one(user)
    assert broker.llen(QUEUE) == 3


def test_the_sweeper_and_retries_always_publish(user, broker) -> None:
    complete_one(user)  # a message queued, and marked
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(dispatched_at=timezone.now() - timezone.timedelta(hours=1))
    dispatch.redispatch(Delivery.objects.filter(pk=delivery.pk), fresh_budget=False)
    assert broker.llen(QUEUE) == 2


def test_a_cache_that_is_down_publishes_every_message(user, broker, monkeypatch) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("cache down")

    monkeypatch.setattr(coalesce.caches["default"], "add", down)
    for _ in range(2):
        complete_one(user)
    assert broker.llen(QUEUE) == 2
