"""Prometheus histograms of delivery durations and relay batch sizes: observed where the work
happens, once it commits, and summed across processes (prometheus_client's multiprocess
mode) by the web's /metrics and by a worker's own metrics port."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from prometheus_client import REGISTRY

from outbox import relay
from outbox.models import Delivery
from tasks_app import services

from .conftest import WorkerProcess, deliver, events_of, settle
from .factories import TaskFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def complete_one() -> None:
    user = UserFactory()
    services.complete_task(TaskFactory(owner=user), by=user)


def test_each_attempt_is_observed_by_subscriber_and_outcome_once_committed(use_subscribers) -> None:
    use_subscribers("recorder", "flaky", "second")
    complete_one()
    (event,) = events_of("task.completed")
    before = sample("outbox_delivery_seconds_count", subscriber="recorder", outcome="succeeded")
    retries = sample("outbox_delivery_seconds_count", subscriber="flaky", outcome="retry")
    deliver("recorder", event)
    deliver("flaky", event)
    assert sample("outbox_delivery_seconds_count", subscriber="recorder", outcome="succeeded") == before + 1
    assert sample("outbox_delivery_seconds_count", subscriber="flaky", outcome="retry") == retries + 1

    # An attempt whose transaction rolls back was never made: nothing observed.
    with transaction.atomic():
        deliver("second", event)
        transaction.set_rollback(True)
    assert sample("outbox_delivery_seconds_count", subscriber="second", outcome="succeeded") == 0


def test_each_relay_batch_is_observed(use_subscribers) -> None:
    use_subscribers("recorder")
    for _ in range(3):
        complete_one()
    count, total = sample("outbox_relay_batch_events_count"), sample("outbox_relay_batch_events_sum")
    two, five = (sample("outbox_relay_batch_events_bucket", le=le) for le in ("2.0", "5.0"))
    assert relay.relay_once() == 3
    assert sample("outbox_relay_batch_events_count") == count + 1
    assert sample("outbox_relay_batch_events_sum") == total + 3
    # Three events: in the buckets from le=5 up, not in le=2.
    assert sample("outbox_relay_batch_events_bucket", le="2.0") == two
    assert sample("outbox_relay_batch_events_bucket", le="5.0") == five + 1


def test_metrics_show_the_histograms(client: Client, use_subscribers) -> None:
    use_subscribers("recorder")
    complete_one()
    relay.relay_once()
    deliver("recorder", events_of("task.completed")[0])
    text = client.get("/metrics").content.decode()
    assert "# TYPE outbox_delivery_seconds histogram" in text
    assert 'outbox_delivery_seconds_bucket{le="+Inf",outcome="succeeded",subscriber="recorder"}' in text
    assert "# TYPE outbox_relay_batch_events histogram" in text
    assert "outbox_relay_batch_events_count" in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_worker_processes_histograms_are_summed_by_the_web_and_the_worker_port(
    tmp_path: Any,
    start_celery_worker: Callable[..., Any],
    worker_process: Callable[..., WorkerProcess],
    use_subscribers: Callable[..., None],
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_subscribers("recorder")
    start_celery_worker("outbox")  # the relay, in this process
    port = free_port()
    worker = worker_process(
        "test_recorder",
        concurrency=2,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        SELFOS_WORKER_METRICS_PORT=str(port),
    )
    for _ in range(3):
        complete_one()
    settle(lambda: Delivery.objects.filter(status="succeeded").count() == 3)

    line = 'outbox_delivery_seconds_count{outcome="succeeded",subscriber="recorder"} 3.0'
    own = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert line in own, worker.output()
    # The web's /metrics, on the same host, reads the same files, and adds the outbox's gauges.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = client.get("/metrics").content.decode()
    assert line in text
    assert 'outbox_deliveries{status="succeeded",subscriber="recorder"} 3.0' in text
