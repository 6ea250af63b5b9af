"""What one completion answered on its own costs: each step alone, in process, nothing else running.

    SELFOS_DB_NAME=selfos_bench .venv/bin/python scripts/with_services.py -- \\
        .venv/bin/python -m bench.permessage [--completions 60] [--profile cumulative|tottime]

For each completion, in turn: the write (`services.complete_task`), one relay run, then each
subscriber's message carrying its one delivery (`run_deliveries`, as a worker runs it, minus
Celery's own handling of the message). Prints, per step, the median thread CPU (this process
only: PostgreSQL's side is not in it), wall time and statements (Django's query log, which is
on while it counts). At low load every completion is answered like this, so these are the
fixed costs that batching amortises and that a prompt answer pays in full (README,
Benchmarks). `--profile` adds a cProfile of each step. Like `bench.steady` it empties the
bench database first; it starts no worker (the relay's messages are left in the queue).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable

WARM_UP = 10  # completions before the counting starts: caches, the model, prepared connections


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.permessage")
    parser.add_argument("--completions", type=int, default=60)
    parser.add_argument("--profile", choices=["cumulative", "tottime"], help="print a cProfile of each step")
    args = parser.parse_args(argv)

    from .__main__ import print_table, setup_bench_database

    setup_bench_database()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from outbox import relay
    from outbox.delivery import run_deliveries
    from outbox.models import Delivery
    from tasks_app import services

    from .suites.common import Row, reset
    from .suites.latency import bench_tasks

    reset()
    samples: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    profiles: dict[str, cProfile.Profile] = defaultdict(cProfile.Profile)

    def measure(step: str, counted: bool, work: Callable[[], object]) -> None:
        with CaptureQueriesContext(connection) as queries:
            cpu, wall = time.thread_time(), time.perf_counter()
            if counted and args.profile:
                profiles[step].enable()
            work()
            profiles[step].disable()
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        if counted:
            samples[step].append((cpu * 1000, wall * 1000, len(queries)))

    for i, task in enumerate(bench_tasks(WARM_UP + args.completions)):
        counted = i >= WARM_UP
        measure("the write", counted, lambda task=task: services.complete_task(task, by=task.owner))
        measure("a relay run", counted, relay.relay)
        for delivery in Delivery.objects.filter(status=Delivery.Status.DISPATCHED).order_by("id"):
            measure(
                f"{delivery.subscriber}: a message of one delivery",
                counted,
                lambda d=delivery: run_deliveries(d.subscriber, [d.id]),
            )

    rows: list[Row] = []
    for step, values in samples.items():
        cpu, wall, statements = (statistics.median(v[k] for v in values) for k in range(3))
        bench, wall_figure = "one completion on its own", f"{step}: wall, median, {statements:.0f} statements"
        rows += [
            Row(bench=bench, figure=f"{step}: thread CPU, median", value=cpu, unit="ms"),
            Row(bench=bench, figure=wall_figure, value=wall, unit="ms"),
        ]
    print_table([row.to_json() for row in rows])
    if args.profile:
        for step, profile in profiles.items():
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(args.profile).print_stats(30)
            print(f"\n===== {step}\n{out.getvalue()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
