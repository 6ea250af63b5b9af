"""The layout suite: which pool the progress, story and notifications worker should run.

Its handlers mostly wait: on PostgreSQL's round trips, on FCM, on an LLM server. A prefork
process waits idle, a thread lets another run meanwhile. So the sustained rate (as in the
sustained suite: the highest rate that drains within 5 s, 100 deliveries per message) is
measured with that worker as the Procfile runs it (prefork, 2 processes, one per core) and
with threads (4 and 8 in one process), the rest unchanged. The Procfile's comment cites
these rows.

Baseline, same run: the Procfile's prefork x 2.
"""

from __future__ import annotations

from ..processes import SUBSCRIBERS_POOL
from .common import Row, reset
from .sustained import best_rate

LAYOUTS = (("threads", 4), ("threads", 8))


def run(quick: bool) -> list[Row]:
    rates = (2, 4, 8) if quick else (8, 16, 24, 32, 48, 64, 80, 96, 128, 160, 200, 240)
    seconds = 5 if quick else 10
    procfile, _ = best_rate(100, rates, seconds, SUBSCRIBERS_POOL, profiled=False)
    pool, concurrency = SUBSCRIBERS_POOL
    rows = [
        Row(
            bench="layout",
            figure=f"sustained completions/s, subscribers worker {pool} x {concurrency} (the Procfile's)",
            value=float(procfile),
            unit="/s",
        )
    ]
    for pool, concurrency in LAYOUTS:
        rate, _ = best_rate(100, rates, seconds, (pool, concurrency), profiled=False)
        rows.append(
            Row(
                bench="layout",
                figure=f"sustained completions/s, subscribers worker {pool} x {concurrency}",
                value=float(rate),
                unit="/s",
                baseline=float(procfile),
            )
        )
    reset()
    return rows
