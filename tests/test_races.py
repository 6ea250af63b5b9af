"""Two workers racing for one delivery: the copy that reaches a second worker while the first runs it
is skipped, so there is one effect and one success."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis

from outbox import sweeper
from outbox.models import Delivery, DeliveryAttempt
from tasks_app import services

from .conftest import WorkerProcess, settle
from .factories import TaskFactory, UserFactory
from .subscribers import HOLD_SLOW_KEY, SLOW_RUNNING_KEY
from .testapp.models import Effect

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUEUE = "test_slow"  # the `slow` subscriber's


def skip_line(delivery: Delivery) -> str:
    return f"delivery {delivery.pk} of slow skipped (done, waiting or running elsewhere)"


def success_line(delivery: Delivery) -> str:
    return f"delivery {delivery.pk} of slow for event {delivery.event_id} succeeded"


def test_a_republished_delivery_reaching_a_second_worker_while_the_first_runs_it_is_skipped(
    start_celery_worker: Callable[..., Any],
    worker_process: Callable[..., WorkerProcess],
    broker: Redis,
    use_subscribers: Callable[..., None],
    settings: Any,
) -> None:
    use_subscribers("slow")
    start_celery_worker("outbox")  # the relay, in this process; nobody consumes QUEUE yet
    broker.delete(QUEUE)
    broker.set(HOLD_SLOW_KEY, 1)
    broker.delete(SLOW_RUNNING_KEY)
    # Past its lease a delivery is re-published even while its queue holds messages (the
    # sweeper's backlog check is a snapshot: the message may be in a worker's hands).
    settings.OUTBOX = {**settings.OUTBOX, "LEASE_MAX_SECONDS": 0}
    user = UserFactory()
    services.complete_task(TaskFactory(owner=user), by=user)
    settle(lambda: broker.llen(QUEUE) == 1, sweep=False)  # the relay's message
    delivery = Delivery.objects.get(subscriber="slow")

    # The sweeper, lease 0: dispatched and unfinished, so the delivery goes out a second time.
    assert sweeper.sweep(lease_seconds=0) == {"retries": 0, "expired": 1}
    assert broker.llen(QUEUE) == 2

    worker_a = worker_process(QUEUE)
    settle(lambda: broker.get(SLOW_RUNNING_KEY) == str(delivery.event_id).encode(), sweep=False)
    # A holds the row in its handler and takes no second message meanwhile (prefetch 1, acks late).
    assert broker.llen(QUEUE) == 1
    # The sweeper leaves a row a worker is running alone: only a copy sent before A claimed it races A.
    assert sweeper.sweep(lease_seconds=0)["expired"] == 0
    broker.delete(SLOW_RUNNING_KEY)  # any handler that starts from now on sets it again

    worker_b = worker_process(QUEUE)
    settle(lambda: skip_line(delivery) in worker_b.output(), sweep=False)
    assert broker.llen(QUEUE) == 0  # B took the re-published copy...
    assert not broker.exists(SLOW_RUNNING_KEY)  # ...and skipped it without entering the handler
    # ...while A was still holding: nothing committed yet, no effect, no attempt.
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.DISPATCHED, 0)
    assert Effect.objects.count() == 0

    broker.delete(HOLD_SLOW_KEY)  # release A
    settle(lambda: Delivery.objects.get(pk=delivery.pk).status != Delivery.Status.DISPATCHED, sweep=False)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.SUCCEEDED, 1)
    assert list(Effect.objects.values_list("subscriber", "event_id")) == [("slow", delivery.event_id)]
    [attempt] = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (attempt.outcome, attempt.worker) == (DeliveryAttempt.Outcome.SUCCEEDED, worker_a.hostname)
    assert success_line(delivery) in worker_a.output()
    assert skip_line(delivery) not in worker_a.output()
    assert success_line(delivery) not in worker_b.output()
