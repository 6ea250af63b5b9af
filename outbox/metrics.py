"""Prometheus metrics of the outbox, read from its tables when /metrics is scraped.

Reading the tables (not counters kept in memory) means one scrape of the web process
sees what every relay and worker did, with no per-process registry to merge. The
figures over a window (durations, batch sizes, throughput) cover the last
WINDOW_MINUTES; the rest are current counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.db import connection
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import counts
from .models import Delivery

WINDOW_MINUTES = 15
QUANTILES = (0.5, 0.9, 0.99)


class OutboxCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        # Registration asks for the names; without describe() it would call collect()
        # and query the database while the URLconf loads.
        yield GaugeMetricFamily("outbox_pending_events", "")
        yield GaugeMetricFamily("outbox_oldest_pending_event_age_seconds", "")
        yield GaugeMetricFamily("outbox_deliveries", "", labels=["subscriber", "status"])
        yield GaugeMetricFamily("outbox_dead_deliveries", "", labels=["subscriber"])
        yield GaugeMetricFamily("outbox_delivery_duration_seconds", "", labels=["subscriber", "quantile"])
        yield GaugeMetricFamily("outbox_relay_batch_size", "", labels=["quantile"])
        yield GaugeMetricFamily("outbox_relayed_events_per_second", "")

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        since = now - timedelta(minutes=WINDOW_MINUTES)

        pending = counts.pending_events()
        yield GaugeMetricFamily(
            "outbox_pending_events", "Events written and not yet fanned out", value=pending.count
        )
        yield GaugeMetricFamily(
            "outbox_oldest_pending_event_age_seconds",
            "Age of the oldest event waiting for the relay (0 when none)",
            value=pending.oldest_age_seconds or 0,
        )

        by_status = GaugeMetricFamily(
            "outbox_deliveries", "Deliveries by subscriber and status", labels=["subscriber", "status"]
        )
        dead = GaugeMetricFamily(
            "outbox_dead_deliveries", "Dead deliveries waiting for an operator", labels=["subscriber"]
        )
        for (subscriber, status), n in counts.deliveries_by_subscriber_and_status().items():
            by_status.add_metric([subscriber, status], n)
            if status == Delivery.Status.DEAD:
                dead.add_metric([subscriber], n)
        yield by_status
        yield dead

        durations = GaugeMetricFamily(
            "outbox_delivery_duration_seconds",
            f"Handler duration quantiles per subscriber over the last {WINDOW_MINUTES} minutes",
            labels=["subscriber", "quantile"],
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT d.subscriber, percentile_cont(%s) WITHIN GROUP (ORDER BY a.duration_ms)"
                " FROM outbox_deliveryattempt a JOIN outbox_delivery d ON d.id = a.delivery_id"
                " WHERE a.started_at >= %s GROUP BY d.subscriber",
                [list(QUANTILES), since],
            )
            for subscriber, values in cursor.fetchall():
                for q, ms in zip(QUANTILES, values, strict=True):
                    durations.add_metric([subscriber, str(q)], ms / 1000)
            # One relay transaction stamps all the events it claimed with the same time.
            cursor.execute(
                "SELECT count(*) FROM outbox_outboxevent WHERE dispatched_at >= %s GROUP BY dispatched_at",
                [since],
            )
            batches = sorted(n for (n,) in cursor.fetchall())
        yield durations

        batch = GaugeMetricFamily(
            "outbox_relay_batch_size",
            f"Events per relay batch over the last {WINDOW_MINUTES} minutes",
            labels=["quantile"],
        )
        for q in QUANTILES:
            batch.add_metric(
                [str(q)], batches[min(len(batches) - 1, int(q * len(batches)))] if batches else 0
            )
        yield batch
        yield GaugeMetricFamily(
            "outbox_relayed_events_per_second",
            f"Events fanned out per second over the last {WINDOW_MINUTES} minutes",
            value=sum(batches) / (WINDOW_MINUTES * 60),
        )
