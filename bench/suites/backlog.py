"""The backlog suite: a large pending backlog (10,000 events quick, 100,000 full) drained by
the real relay, workers and beat into four no-op subscribers (bench/backlog/, so the
outbox itself is what is measured): seconds to fan out, seconds until every delivery
succeeded, and the peak RSS of each worker's process tree.

Baseline, same run: the same with a tenth of the backlog; peak memory must not grow with it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.utils import timezone

from outbox.models import Delivery, OutboxEvent

from ..processes import Processes, process_tree, summed
from .common import MIB, Row, reset


class PeakRSS:
    """Samples the resident memory of process trees (a Celery worker and its pool) in a thread."""

    def __init__(self, procs: dict[str, Any], every: float = 0.5) -> None:
        self.pids = {name: p.pid for name, p in procs.items()}
        self.peak = dict.fromkeys(procs, 0)
        self.every = every
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> None:
        for name, pid in self.pids.items():
            rss = summed(process_tree(pid), lambda proc: proc.memory_info().rss)
            self.peak[name] = max(self.peak[name], int(rss))

    def run(self) -> None:
        # A sample at once, and one at the end: a small backlog may drain within one period.
        self.sample()
        while not self.stopped.wait(self.every):
            self.sample()
        self.sample()

    def __enter__(self) -> PeakRSS:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()


def drain_backlog(n: int) -> tuple[float, float, dict[str, int]]:
    """`n` pending events for four no-op subscribers, drained by the real relay, workers and
    beat; returns (seconds to fan out, seconds to deliver everything, peak RSS per process)."""
    # Imported here, not at the top: importing registers the no-op subscribers in this
    # process, and the suites that run before this one must not have them.
    from bench.backlog.subscribers import EVENT

    reset()
    now = timezone.now()
    for start in range(0, n, 10_000):
        OutboxEvent.objects.bulk_create(
            [
                OutboxEvent(
                    type=EVENT, aggregate_type="bench", aggregate_id=str(i), payload={}, created_at=now
                )
                for i in range(start, min(n, start + 10_000))
            ]
        )
    with Processes() as procs:
        workers = procs.service(DJANGO_SETTINGS_MODULE="bench.backlog.settings")
        started = time.monotonic()  # from workers ready to the backlog drained
        fanned_out: float | None = None
        with PeakRSS(workers) as rss:
            deadline = time.monotonic() + 3600
            while time.monotonic() < deadline:
                if (
                    fanned_out is None
                    and not OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists()
                ):
                    fanned_out = time.monotonic() - started
                if (
                    fanned_out is not None
                    and not Delivery.objects.exclude(status=Delivery.Status.SUCCEEDED).exists()
                ):
                    break
                time.sleep(0.5)
            delivered = time.monotonic() - started
    assert fanned_out is not None, "the relay did not fan the backlog out"
    assert Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count() == 4 * n, (
        "the backlog did not drain"
    )
    return fanned_out, delivered, rss.peak


def run(quick: bool) -> list[Row]:
    small, large = (1_000, 10_000) if quick else (10_000, 100_000)
    _, _, small_peak = drain_backlog(small)
    fanned_out, delivered, peak = drain_backlog(large)
    reset()
    rows = [
        Row(bench="backlog", figure=f"{large:,} events fanned out", value=fanned_out, unit="s"),
        Row(
            bench="backlog",
            figure=f"{large:,} events, {4 * large:,} deliveries (no-op handlers) all succeeded",
            value=delivered,
            unit="s",
        ),
        Row(bench="backlog", figure="deliveries/s", value=4 * large / delivered, unit="/s"),
    ]
    for name in ("relay", "subscribers", "memory"):
        rows.append(
            Row(
                bench="backlog",
                figure=f"peak RSS, {name} worker (all its processes), {large:,} vs {small:,} backlog",
                value=peak[name] / MIB,
                unit="MiB",
                baseline=small_peak[name] / MIB,
                target="flat (<= 1.1x)",
                met=peak[name] <= 1.1 * small_peak[name],
            )
        )
    return rows
