"""What the outbox tells tracing and Prometheus: spans that follow an event across its row,
and histograms of what the relay and the workers did.

Traces. `publish()` stores the W3C trace context of the span current at the time (the request
that completed the task) in the event (`OutboxEvent.trace_context`). The relay and every
delivery attempt then record spans *in that trace*, as children of the publishing span,
whichever process, retry or sweeper re-publish they come from: the trace follows the row, not
the Celery message. Each span also links to the span current where it was recorded (the relay
run's or the worker's Celery task), and that span links back to the events it carried, so a
batch of a hundred deliveries is one click from each of the hundred traces.

Only the OpenTelemetry API is used here; the host project installs the SDK and an exporter
(SelfOS: `selfos/tracing.py`). Without them there is no valid current span, so events carry
no context, and an event without one costs no span anywhere: tracing off costs one
`get_current_span()` per publish and nothing after.

Spans are recorded after the fact, with the start and end times the outbox measured, and only
once the transaction that recorded the outcome has committed: a trace never shows an attempt
that rolled back.

Metrics. Prometheus histograms (`prometheus_client`), observed in the process that did the
work: delivery handler time by subscriber and outcome, and events per relay batch. Unlike the
quantile gauges of outbox/metrics.py (read from the tables, one figure for the whole system),
histograms add up across processes and hosts: `sum by (le) (rate(..._bucket[5m]))`. With
several processes per host, set PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess
mode) so one scrape sees them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from prometheus_client import Histogram

tracer = trace.get_tracer("outbox")

DELIVERY_SECONDS = Histogram(
    "outbox_delivery_seconds",
    "Handler time of each delivery attempt, by subscriber and outcome",
    ["subscriber", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RELAY_BATCH_EVENTS = Histogram(
    "outbox_relay_batch_events",
    "Events claimed by each relay batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)


def current_context() -> dict[str, str]:
    """The current span's W3C trace context (`traceparent`, `tracestate`) for an event to
    carry; empty when nothing is being traced."""
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def _link_here(carriers: Iterable[Mapping[str, str]]) -> list[Link]:
    """Link the span current here (a Celery task run) to each event's trace, and return a link
    to it for the events' spans: both directions, so neither trace is a dead end."""
    here = trace.get_current_span()
    if here.is_recording():
        for carrier in carriers:
            context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
            if context.is_valid:
                here.add_link(context)
    context = here.get_span_context()
    return [Link(context)] if context.is_valid else []


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt as the outbox recorded it, for its span and its histogram."""

    carrier: Mapping[str, str]
    event_id: int
    event_type: str
    delivery_id: int
    subscriber: str
    number: int
    outcome: str
    started_at: datetime
    duration_ms: float
    error: BaseException | None = None


def attempts_recorded(attempts: list[Attempt]) -> None:
    """Observe the attempts' durations and record their spans when the transaction commits."""
    if attempts:
        transaction.on_commit(lambda: _emit_attempts(attempts), robust=True)


def _emit_attempts(attempts: list[Attempt]) -> None:
    for a in attempts:
        DELIVERY_SECONDS.labels(a.subscriber, a.outcome).observe(a.duration_ms / 1000)
    traced = [a for a in attempts if a.carrier]
    if not traced:
        return
    links = _link_here(a.carrier for a in traced)
    for a in traced:
        start = _ns(a.started_at)
        span = tracer.start_span(
            f"outbox deliver {a.subscriber}",
            context=propagate.extract(a.carrier),
            kind=SpanKind.CONSUMER,
            links=links,
            start_time=start,
            attributes={
                "outbox.event_id": a.event_id,
                "outbox.event_type": a.event_type,
                "outbox.delivery_id": a.delivery_id,
                "outbox.subscriber": a.subscriber,
                "outbox.attempt": a.number,
                "outbox.outcome": a.outcome,
            },
        )
        if a.error is not None:
            span.record_exception(a.error)
            span.set_status(Status(StatusCode.ERROR, f"{type(a.error).__name__}: {a.error}"[:200]))
        span.end(end_time=start + int(a.duration_ms * 1_000_000))


def relayed(
    events: list[tuple[int, str, Mapping[str, str]]],
    deliveries_per_event: Mapping[int, int],
    started_at: datetime,
    ended_at: datetime,
) -> None:
    """One relay batch fanned out: its size, and a span per traced event in the event's trace."""
    RELAY_BATCH_EVENTS.observe(len(events))
    traced = [(i, t, c) for i, t, c in events if c]
    if not traced:
        return
    links = _link_here(c for _, _, c in traced)
    for event_id, event_type, carrier in traced:
        span = tracer.start_span(
            "outbox relay",
            context=propagate.extract(carrier),
            kind=SpanKind.PRODUCER,
            links=links,
            start_time=_ns(started_at),
            attributes={
                "outbox.event_id": event_id,
                "outbox.event_type": event_type,
                "outbox.deliveries": deliveries_per_event.get(event_id, 0),
                "outbox.batch_events": len(events),
            },
        )
        span.end(end_time=_ns(ended_at))
