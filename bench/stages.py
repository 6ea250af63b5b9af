"""Where the time of a completion goes, stage by stage, from the rows a latency run leaves behind.

    SELFOS_DB_NAME=selfos_bench .venv/bin/python scripts/with_services.py -- \\
        .venv/bin/python -m bench.stages [--events 100] [--skip 0]

Takes the last `--events` task.completed events (after skipping the newest `--skip`;
after `make bench BENCH_ARGS="--only latency"`, the last 300 are the 15/s run with the
kick, the 100 before them the 5/s beat-only run, and the 100 before those the 5/s run
with the kick: `--events 300`, `--skip 300`, `--skip 400`) and prints medians: relay lag (commit to
dispatch), then per subscriber the queue wait (dispatch to start) and the handler time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages")
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--skip", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.local")
    import django

    django.setup()
    from outbox.models import Delivery, DeliveryAttempt, OutboxEvent

    newest = OutboxEvent.objects.filter(type="task.completed").order_by("-id").values_list("id", flat=True)
    ids = list(newest[args.skip : args.skip + args.events])
    deliveries = list(
        Delivery.objects.filter(event_id__in=ids, status=Delivery.Status.SUCCEEDED).select_related("event")
    )
    attempts = {
        a.delivery_id: a
        for a in DeliveryAttempt.objects.filter(
            delivery__in=deliveries, outcome=DeliveryAttempt.Outcome.SUCCEEDED
        )
    }

    def median_ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:8.1f} ms" if values else "       -"

    print(f"{len(ids)} events")
    lags = [(d.dispatched_at - d.event.created_at).total_seconds() for d in deliveries]
    print(f"relay lag       {median_ms(lags)}")
    for name in sorted({d.subscriber for d in deliveries}):
        mine = [d for d in deliveries if d.subscriber == name and d.id in attempts]
        wait = [(attempts[d.id].started_at - d.dispatched_at).total_seconds() for d in mine]
        run = [attempts[d.id].duration_ms / 1000 for d in mine]
        print(f"{name:14s}  queue wait {median_ms(wait)}   handler {median_ms(run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
