"""The relay: turns pending events into deliveries, one per subscriber, and hands them to Celery.

Several relays may run at once (a beat tick and a kick, or two hosts): each claims
its own events with SELECT ... FOR UPDATE SKIP LOCKED, so no event is fanned out twice.
Which pending events a claim tries is fair across owners (outbox/fairness.py): one owner's
burst of thousands of events does not hold another owner's event behind it.

Order of work, and what a crash at each point does:
1. claim pending events, create their deliveries (dispatched), mark the events
   dispatched, commit. A crash before the commit rolls all of it back; the events
   are still pending and the next run takes them.
2. publish the Celery messages. A crash here leaves committed, dispatched
   deliveries with no message; the sweeper re-publishes them after their lease.
   A crash after publishing some messages can make the sweeper publish them a
   second time: duplicates reach the workers, which skip what already succeeded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from django.db import connection, transaction
from django.utils import timezone

from . import conf, express, fairness, registry, telemetry
from .dispatch import publish_deliveries
from .models import Delivery, OutboxEvent

logger = logging.getLogger(__name__)


def relay_once(batch_size: int | None = None) -> int:
    """Fan out one batch of pending events; returns how many events it claimed."""
    batch_size = batch_size or conf.get("RELAY_BATCH_SIZE")
    now = timezone.now()
    with transaction.atomic():
        _plan_for_now()
        claimed = _claim(batch_size)
        if not claimed:
            return 0
        events = [(event_id, event_type, trace) for event_id, event_type, trace, _ in claimed]
        deliveries = [
            Delivery(
                event_id=event_id,
                subscriber=sub.name,
                dispatched_at=now,
                created_at=now,
                owner_key=owner_key,
            )
            for event_id, event_type, _, owner_key in claimed
            for sub in registry.for_event(event_type)
        ]
        express.mark(deliveries)  # during a burst, light owners' work takes the express lane
        Delivery.objects.bulk_create(deliveries)
        OutboxEvent.objects.filter(id__in=[event_id for event_id, _, _ in events]).update(
            status=OutboxEvent.Status.DISPATCHED, dispatched_at=now
        )
    messages = publish_deliveries(((d.subscriber, d.id) for d in deliveries), coalesce=True)
    if any(d.express for d in deliveries):
        # As well: the express lane is a shortcut, its deliveries are the subscriber's like any.
        messages += publish_deliveries(
            ((d.subscriber, d.id) for d in deliveries if d.express), coalesce=True, express=True
        )
    telemetry.relayed(events, Counter(d.event_id for d in deliveries), now, timezone.now())
    logger.info(
        "outbox relay: %d events -> %d deliveries in %d messages (events %d..%d)",
        len(events),
        len(deliveries),
        messages,
        events[0][0],
        events[-1][0],
        extra={
            "event_ids": [e for e, _, _ in events][:100],
            "delivery_ids": [d.id for d in deliveries][:400],
        },
    )
    return len(events)


def _plan_for_now() -> None:
    """Plan this transaction's statements for the outbox as it is now, not as it once was.

    A connection keeps a generic plan for a statement it runs often (psycopg prepares the
    relay's queries; PostgreSQL caches the foreign-key check that each new delivery makes at
    commit), costed once, with the statistics of that moment. Made while the events table was
    nearly empty (a fresh deployment, a purge, the benchmarks' truncation), the plan reads the
    whole table, and keeps reading it as the table grows, until an ANALYZE happens to replace
    it. Measured in a fairness burst of 2,000 completions: the relay's checks, four an event,
    took 0.4 ms each instead of 0.005 (7 s of the database's time). Planned afresh, each
    statement is costed with the table's size now, for some microseconds of planning.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")


def _claim(batch_size: int) -> list[tuple[int, str, dict, str]]:
    """Lock up to `batch_size` pending events: in turns across owners (outbox/fairness.py), or
    oldest first with FAIR_SHARE off. (id, type, trace context, owner key), in id order."""
    pending = OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING)
    if fairness.enabled() and (dealt := fairness.dealt("events", batch_size)) is not None:
        # The lock and the status check under it are what make the claim safe; the dealt ids
        # only choose which rows to try (another relay may hold or have taken some).
        pending = pending.filter(id__in=[i for i, _ in dealt])
    return list(
        pending.order_by("id")
        .select_for_update(skip_locked=True)
        .values_list("id", "type", "trace_context", "owner_key")[:batch_size]
    )


def relay(time_budget: float | None = None) -> int:
    """Drain the backlog batch by batch until it is empty or the time budget is spent."""
    global _last_run_ended
    budget = conf.get("RELAY_TIME_BUDGET") if time_budget is None else time_budget
    batch_size = conf.get("RELAY_BATCH_SIZE")
    deadline = time.monotonic() + budget
    total = 0
    try:
        while True:
            claimed = relay_once(batch_size)
            total += claimed
            if claimed < batch_size or time.monotonic() >= deadline:
                return total
    finally:
        _last_run_ended = time.monotonic()


# When this process's last relay run ended (monotonic seconds); 0: none yet.
_last_run_ended = 0.0


def space_out() -> float:
    """Before a kicked run: wait until RELAY_MIN_SPACING has passed since the last run ended.

    Every commit kicks the relay, so under steady load runs would follow each other with
    one or two events each, and each run costs the same (a Celery task, a claim, a commit,
    a message per subscriber) whatever it carries. Waiting out the spacing lets the events
    of that interval gather into one run: at 200 completions/s with 20 ms, four runs of ten
    instead of two hundred of one. The wait happens before the kick mark is cleared, so
    the commits meanwhile send no kick of their own. At low load the last run ended longer
    ago than the spacing, and nothing waits. Returns the seconds waited.
    """
    pause = _last_run_ended + conf.get("RELAY_MIN_SPACING") - time.monotonic()
    if pause <= 0:
        return 0.0
    time.sleep(pause)
    return pause
