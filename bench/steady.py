"""One steady load through the real service, profiled: end-to-end percentiles, where the time
went (`bench.stages`) and CPU per completion by process, for trying a change at the rate where
it matters without a whole `make bench`.

    SELFOS_DB_NAME=selfos_bench .venv/bin/python scripts/with_services.py -- \\
        .venv/bin/python -m bench.steady --rate 15 [--seconds 20] [--no-kick] [--env NAME=VALUE ...]

`--env` sets a variable in the workers' environment only (`--env CELERY_TASK_EVENTS=true`,
`--env OUTBOX_RELAY_MIN_SPACING=0.005`). Like the suites it empties the bench database first,
and starts the Procfile's workers and beat (bench/processes.py). Prints the table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.steady")
    parser.add_argument("--rate", type=float, required=True, help="completions per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--no-kick", action="store_true", help="the beat schedule alone relays")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)

    from .__main__ import print_table, setup_bench_database

    setup_bench_database()
    from .processes import Processes
    from .suites.common import Row, percentile, reset
    from .suites.latency import bench_tasks, profiled, run_completions

    reset()
    with Processes() as procs:
        workers = procs.service(**env)
        run_completions(rate=5, seconds=4, kick=True)  # warm-up: models loaded, connections open
        tasks = bench_tasks(int(args.rate * args.seconds))
        latencies, profile = profiled(workers, tasks, args.rate, kick=not args.no_kick)
    values = list(latencies.values())
    rows = [
        Row(
            bench="end to end", figure=f"p{p}, {args.rate:g}/s", value=percentile(values, p) * 1000, unit="ms"
        )
        for p in (50, 90, 99)
    ]
    print_table([row.to_json() for row in [*rows, *profile]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
