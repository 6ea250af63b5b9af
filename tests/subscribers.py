"""Subscribers the outbox tests declare for themselves (the product's own come from workers/).

They are registered when conftest imports this module, so their Celery tasks exist
before any test worker starts; each test activates the ones it wants with
`tests.registry.only(...)` (the `use_subscribers` fixture).
"""

from __future__ import annotations

import time
from collections import Counter
from threading import Event as ThreadEvent

from django.conf import settings
from redis import Redis

from outbox.api import Event, PermanentError, RetryPolicy, TransientError, subscriber

from . import loopback_fcm  # noqa: F401 - a worker process started with its variables pushes to FakeFCM
from .testapp.models import Effect

TASK_EVENTS = ["task.completed"]
FAST_RETRY = RetryPolicy(max_retries=3, backoff=0.05, backoff_max=0.1, jitter=False)

# Shared with the in-thread worker: how many times each (subscriber, event) was tried.
calls: Counter[tuple[str, int]] = Counter()
# Set by a test to make `fixable` stop failing (an operator fixed the cause).
healed = ThreadEvent()


def _effect(name: str, event: Event) -> None:
    calls[(name, event.id)] += 1
    Effect.objects.create(subscriber=name, event_id=event.id)


@subscriber("recorder", events=TASK_EVENTS, queue="test_recorder", retry=FAST_RETRY)
def recorder(event: Event) -> None:
    event.require("task_id", version=1)
    _effect("recorder", event)


@subscriber("second", events=TASK_EVENTS, queue="test_second", retry=FAST_RETRY)
def second(event: Event) -> None:
    _effect("second", event)


@subscriber("flaky", events=TASK_EVENTS, queue="test_flaky", retry=FAST_RETRY)
def flaky(event: Event) -> None:
    """Fails transiently twice per event, then succeeds."""
    calls[("flaky", event.id)] += 1
    if calls[("flaky", event.id)] <= 2:
        raise TransientError("upstream timed out")
    Effect.objects.create(subscriber="flaky", event_id=event.id)


@subscriber("always_transient", events=TASK_EVENTS, queue="test_transient", retry=FAST_RETRY)
def always_transient(event: Event) -> None:
    calls[("always_transient", event.id)] += 1
    Effect.objects.create(subscriber="always_transient", event_id=event.id)  # rolled back each time
    raise TransientError("still down")


@subscriber("broken", events=TASK_EVENTS, queue="test_broken", retry=FAST_RETRY)
def broken(event: Event) -> None:
    calls[("broken", event.id)] += 1
    raise PermanentError("this payload can never work")


@subscriber("buggy", events=TASK_EVENTS, queue="test_broken", retry=FAST_RETRY)
def buggy(event: Event) -> None:
    """An unexpected exception is not in retry_for: permanent, dead at once."""
    calls[("buggy", event.id)] += 1
    raise KeyError("no such key")


@subscriber("fixable", events=TASK_EVENTS, queue="test_broken", retry=FAST_RETRY)
def fixable(event: Event) -> None:
    if not healed.is_set():
        raise PermanentError("misconfigured until an operator fixes it")
    _effect("fixable", event)


HOLD_SLOW_KEY = "tests:hold-slow"
SLOW_RUNNING_KEY = "tests:slow-running"  # set while a `slow` handler is in progress


@subscriber("slow", events=TASK_EVENTS, queue="test_slow", retry=FAST_RETRY)
def slow(event: Event) -> None:
    """Holds each delivery while the Redis key HOLD_SLOW_KEY exists (it runs in another process)."""
    redis = Redis.from_url(settings.REDIS_URL)  # Redis even when the broker is RabbitMQ
    redis.set(SLOW_RUNNING_KEY, event.id)
    deadline = time.monotonic() + 30
    while redis.exists(HOLD_SLOW_KEY) and time.monotonic() < deadline:
        time.sleep(0.05)
    _effect("slow", event)


@subscriber("lost", events=TASK_EVENTS, queue="test_lost", retry=FAST_RETRY)
def lost(event: Event) -> None:
    _effect("lost", event)


# What the default test worker consumes. `slow` and `lost` are left out: the tests
# that use them give their queue a worker of its own, at the moment they choose.
_DEFAULT_QUEUES = ("test_broken", "test_flaky", "test_recorder", "test_second", "test_transient")
TEST_QUEUES = [q for name in _DEFAULT_QUEUES for q in (name, f"{name}.express")]  # and their express lanes
