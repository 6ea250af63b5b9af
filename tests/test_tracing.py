"""One completion, one trace: the request that completed the task, the relay that fanned its
event out, and each subscriber's delivery, exported over OTLP/HTTP by the real SDK to a
loopback collector, from this process (the request, the relay) and from real worker
processes (the four subscribers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from rest_framework.test import APIClient

from outbox.models import Delivery, OutboxEvent
from workers.models import Device
from workers.queues import Queue

from . import loopback_fcm
from .conftest import WorkerProcess, client_for, settle
from .factories import TaskFactory, UserFactory
from .fakes import FakeFCM
from .loopback_otlp import LoopbackCollector, Span

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PRODUCT = ("progress", "story", "notifications", "memory")
SERVER, CONSUMER, PRODUCER = 2, 5, 4  # OTLP span kinds
ERROR = 2  # OTLP status code


@pytest.fixture(scope="module")
def collector() -> Iterator[LoopbackCollector]:
    with LoopbackCollector() as running:
        yield running


@pytest.fixture(scope="module")
def provider(collector: LoopbackCollector) -> Iterator[TracerProvider]:
    """This process's SDK, as selfos/tracing.py installs it, exporting to the collector at once.
    A process has one global provider: set once here, shut down after this module (spans made
    later go nowhere, and none are: nothing is instrumented then)."""
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "selfos-web"}))
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces"))
    )
    trace.set_tracer_provider(tracer_provider)
    yield tracer_provider
    tracer_provider.shutdown()


@pytest.fixture
def traced(provider: TracerProvider, collector: LoopbackCollector) -> Iterator[LoopbackCollector]:
    """Requests in this test are traced (the Django instrumentation, as a traced web has it)."""
    collector.clear()
    DjangoInstrumentor().instrument(tracer_provider=provider)
    try:
        yield collector
    finally:
        DjangoInstrumentor().uninstrument()


def worker_env(collector: LoopbackCollector) -> dict[str, str]:
    """A worker process traces as production does when a collector is named."""
    return {
        "SELFOS_TRACING": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "selfos-worker",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # ms: the batches leave at once, for the test
    }


def complete_through_the_api(user: Any) -> tuple[str, OutboxEvent]:
    api: APIClient = client_for(user)
    task = TaskFactory(owner=user)
    assert api.put(f"/api/tasks/{task.pk}/complete/").status_code == 200
    return str(task.pk), OutboxEvent.objects.get(type="task.completed", aggregate_id=str(task.pk))


def all_succeeded() -> bool:
    return Delivery.objects.exists() and not Delivery.objects.exclude(status="succeeded").exists()


def in_trace(spans: list[Span], trace_id: str) -> list[Span]:
    return [s for s in spans if s.trace_id == trace_id]


def test_one_completion_is_one_trace_from_the_request_through_the_relay_to_four_deliveries(
    traced: LoopbackCollector,
    start_celery_worker: Callable[..., Any],
    worker_process: Callable[..., WorkerProcess],
    use_subscribers: Callable[..., None],
    fcm: FakeFCM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_subscribers(*PRODUCT)
    start_celery_worker("outbox")  # the relay, in this process
    for name, value in {**loopback_fcm.worker_env(fcm), **worker_env(traced)}.items():
        monkeypatch.setenv(name, value)
    worker = worker_process(*Queue, concurrency=1)
    user = UserFactory()
    Device.objects.create(owner=user, token="phone", platform=Device.Platform.ANDROID)

    _, event = complete_through_the_api(user)
    settle(all_succeeded, timeout=60)

    # The event carries the request's trace context, in the W3C format.
    request = next(s for s in traced.wait_for(lambda spans: any(s.kind == SERVER for s in spans)))
    assert event.trace_context["traceparent"].split("-")[1:3] == [request.trace_id, request.span_id]

    def whole(spans: list[Span]) -> bool:
        mine = in_trace(spans, request.trace_id)
        return {
            s.attributes.get("outbox.subscriber") for s in mine if s.name.startswith("outbox deliver")
        } == {*PRODUCT}

    trace_spans = in_trace(traced.wait_for(whole), request.trace_id)
    assert request.service == "selfos-web" and "complete" in request.name
    (relay,) = [s for s in trace_spans if s.name == "outbox relay"]
    assert (relay.kind, relay.parent_span_id, relay.service) == (PRODUCER, request.span_id, "selfos-web")
    assert relay.attributes["outbox.event_id"] == event.pk
    assert relay.attributes["outbox.deliveries"] == 4
    deliveries = sorted((s for s in trace_spans if s.name.startswith("outbox deliver")), key=lambda s: s.name)
    assert [s.attributes["outbox.subscriber"] for s in deliveries] == sorted(PRODUCT)
    for span in deliveries:
        assert (span.kind, span.parent_span_id, span.service) == (CONSUMER, request.span_id, "selfos-worker")
        assert span.attributes["outbox.event_id"] == event.pk
        assert (span.attributes["outbox.attempt"], span.attributes["outbox.outcome"]) == (1, "succeeded")
        assert span.status_code != ERROR
        # A delivery span starts after the request's and links to the worker's Celery task run.
        assert span.start_ns >= request.start_ns and span.end_ns >= span.start_ns
        (link,) = span.links
        run = next(s for s in traced.spans if (s.trace_id, s.span_id) == link)
        assert run.service == "selfos-worker" and (request.trace_id, request.span_id) in run.links
    assert worker.process.poll() is None, worker.output()


def test_a_retried_delivery_shows_every_attempt_in_the_trace(
    traced: LoopbackCollector,
    start_celery_worker: Callable[..., Any],
    use_subscribers: Callable[..., None],
) -> None:
    """`flaky` fails twice, then succeeds; its retries (dispatched by the sweeper, in another
    Celery message each) stay in the trace of the request that completed the task."""
    use_subscribers("flaky")
    start_celery_worker("outbox", "test_flaky")
    user = UserFactory()
    _, event = complete_through_the_api(user)
    settle(all_succeeded, timeout=30)

    request = next(s for s in traced.wait_for(lambda spans: any(s.kind == SERVER for s in spans)))
    spans = traced.wait_for(
        lambda spans: sum(s.name == "outbox deliver flaky" for s in in_trace(spans, request.trace_id)) == 3
    )
    attempts = sorted(
        (s for s in in_trace(spans, request.trace_id) if s.name == "outbox deliver flaky"),
        key=lambda s: s.attributes["outbox.attempt"],
    )
    assert [(s.attributes["outbox.attempt"], s.attributes["outbox.outcome"]) for s in attempts] == [
        (1, "retry"),
        (2, "retry"),
        (3, "succeeded"),
    ]
    assert [s.status_code == ERROR for s in attempts] == [True, True, False]
    assert all("exception" in s.events for s in attempts[:2])
    assert all(s.parent_span_id == request.span_id for s in attempts)
    assert {s.attributes["outbox.event_id"] for s in attempts} == {event.pk}


def test_with_tracing_off_an_event_carries_no_context_and_makes_no_span(
    provider: TracerProvider,
    collector: LoopbackCollector,
    user: Any,
    celery_worker: Any,
    use_subscribers: Callable[..., None],
) -> None:
    """No instrumentation, no current span: nothing to store, and nothing recorded after."""
    use_subscribers("recorder")
    collector.clear()
    _, event = complete_through_the_api(user)
    settle(all_succeeded, timeout=30)
    event.refresh_from_db()
    assert event.trace_context == {}
    assert collector.spans == []
