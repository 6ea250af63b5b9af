"""The retention suite: a soak at 50 events/s (2 min quick, 10 min full) into the four no-op
subscribers (bench/backlog/), with a short retention window (20 s quick, 60 s full) purged
every 10 s: the outbox tables' size with their indexes, sampled every 30 s.

Baseline, same run: the size once purging has begun (the first sample after three
retention windows); the size at the end must stay within 1.2x of it.
"""

from __future__ import annotations

import sys
import time

from django.db import connection, transaction

from outbox.models import OutboxEvent
from outbox.publish import publish

from ..processes import Processes
from .common import MIB, Row, bench_user, paced, reset, wait_settled

OUTBOX_TABLES = ("outbox_outboxevent", "outbox_delivery", "outbox_deliveryattempt")
SAMPLE_EVERY = 30  # seconds


def outbox_bytes() -> int:
    """The outbox tables' size on disk, with their indexes and TOAST."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(pg_total_relation_size(t::regclass)) FROM unnest(%s::text[]) AS t",
            [list(OUTBOX_TABLES)],
        )
        return int(cursor.fetchone()[0])


def run(quick: bool) -> list[Row]:
    seconds, keep, rate = (120, 20, 50) if quick else (600, 60, 50)
    # Imported here, not at the top: importing registers the no-op subscribers in this
    # process, and the suites that run before this one must not have them.
    from bench.backlog.subscribers import EVENT

    reset()
    user = bench_user()
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.backlog.settings",
        "OUTBOX_RETENTION_DAYS": str(keep / 86400),
        "OUTBOX_RETENTION_INTERVAL": "10",
    }
    samples: list[tuple[float, int, int]] = []  # (seconds in, bytes, events kept)
    with Processes() as procs:
        procs.service(**env)
        started = time.monotonic()
        next_sample = started
        for i in paced(range(int(seconds * rate)), rate):
            with transaction.atomic():
                publish(EVENT, user, {"n": i})
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - started, outbox_bytes(), OutboxEvent.objects.count()))
                next_sample += SAMPLE_EVERY
        samples.append((time.monotonic() - started, outbox_bytes(), OutboxEvent.objects.count()))
        drained = wait_settled(120)
    reset()
    for at, size, kept in samples:
        print(f"bench: retention, {at:5.0f}s: {size / MIB:6.2f} MiB, {kept:,} events", file=sys.stderr)
    # Steady state: the first sample after three retention windows (purges have begun).
    steady = next(s for s in samples if s[0] >= 3 * keep)
    end, peak = samples[-1], max(size for _, size, _ in samples)
    return [
        Row(
            bench="retention",
            figure=f"outbox tables + indexes after {end[0] / 60:.0f} min at {rate}/s ({keep} s retention)",
            value=end[1] / MIB,
            unit="MiB",
            baseline=steady[1] / MIB,
            target=f"flat vs at {steady[0]:.0f} s (<= 1.2x)",
            met=end[1] <= 1.2 * steady[1] and drained,
        ),
        Row(bench="retention", figure="peak size during the soak", value=peak / MIB, unit="MiB"),
        Row(bench="retention", figure="events kept at the end", value=end[2], unit=""),
    ]
