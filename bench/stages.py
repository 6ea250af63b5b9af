"""Where the time of a completion goes, stage by stage, from the rows a latency run leaves behind.

    SELFOS_DB_NAME=selfos_bench .venv/bin/python scripts/with_services.py -- \\
        .venv/bin/python -m bench.stages [--events 100] [--skip 0]

Takes the last `--events` task.completed events (after skipping the newest `--skip`) and
prints medians: relay lag (commit to dispatch), then per subscriber the queue wait (dispatch
to the start of the batch that ran the delivery), the batch's run (its start to its commit:
what the delivery waited for, not its share of the batch), the deliveries per message, and
how often that subscriber was the last of the four to finish (the one end to end measures).
The latency suite prints the same for its run at half the sustained rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SubscriberStages:
    name: str
    wait_ms: float  # dispatched -> its batch started
    run_ms: float  # its batch started -> committed
    per_message: float  # deliveries per Celery message
    last_share: float  # of the events, the share whose last delivery to finish was this one


@dataclass(frozen=True)
class Stages:
    events: int
    relay_lag_ms: float  # committed -> dispatched
    subscribers: list[SubscriberStages]


def _median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def stages_of(event_ids: Sequence[int]) -> Stages:
    """The stage medians of these events' successful deliveries."""
    from outbox.models import Delivery, DeliveryAttempt

    deliveries = list(
        Delivery.objects.filter(event_id__in=event_ids, status=Delivery.Status.SUCCEEDED).select_related(
            "event"
        )
    )
    attempts = {
        a.delivery_id: a
        for a in DeliveryAttempt.objects.filter(
            delivery__in=deliveries, outcome=DeliveryAttempt.Outcome.SUCCEEDED
        )
    }
    last: dict[int, Delivery] = {}
    for d in deliveries:
        if d.event_id not in last or d.completed_at > last[d.event_id].completed_at:
            last[d.event_id] = d
    last_counts = Counter(d.subscriber for d in last.values())
    subscribers = []
    for name in sorted({d.subscriber for d in deliveries}):
        mine = [(d, attempts[d.id]) for d in deliveries if d.subscriber == name and d.id in attempts]
        messages = {a.celery_task_id for _, a in mine}
        subscribers.append(
            SubscriberStages(
                name=name,
                wait_ms=_median_ms([(a.started_at - d.dispatched_at).total_seconds() for d, a in mine]),
                run_ms=_median_ms([(d.completed_at - a.started_at).total_seconds() for d, a in mine]),
                per_message=len(mine) / len(messages) if messages else 0.0,
                last_share=last_counts[name] / len(last) if last else 0.0,
            )
        )
    lags = [(d.dispatched_at - d.event.created_at).total_seconds() for d in deliveries]
    return Stages(events=len(last), relay_lag_ms=_median_ms(lags), subscribers=subscribers)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages")
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--skip", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.local")
    import django

    django.setup()
    from outbox.models import OutboxEvent

    newest = OutboxEvent.objects.filter(type="task.completed").order_by("-id").values_list("id", flat=True)
    stages = stages_of(list(newest[args.skip : args.skip + args.events]))
    print(f"{stages.events} events")
    print(f"relay lag        {stages.relay_lag_ms:8.1f} ms")
    for s in stages.subscribers:
        print(
            f"{s.name:14s}  queue wait {s.wait_ms:8.1f} ms   batch run {s.run_ms:8.1f} ms"
            f"   {s.per_message:5.1f} per message   last to finish {s.last_share:4.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
