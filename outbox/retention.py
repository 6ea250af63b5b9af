"""Retention: deletes events whose every delivery succeeded, once they are old enough and
in the event log.

Events with a dead, pending or dispatched delivery stay: they still need an operator
or a worker. An event missing from the event log stays too (`manage.py events backfill` logs
it): retention must never erase history. Deletes go in bounded batches so the table is never
locked for long.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from . import conf
from .eventlog.models import EventLog
from .models import Delivery, DeliveryAttempt, OutboxEvent

logger = logging.getLogger(__name__)


def purge_batch(older_than_days: float | None = None, batch_size: int | None = None) -> int:
    """Delete one batch of finished events; returns how many events it deleted."""
    days = conf.get("RETENTION_DAYS") if older_than_days is None else older_than_days
    batch_size = batch_size or conf.get("RETENTION_BATCH_SIZE")
    cutoff = timezone.now() - timedelta(days=days)
    unfinished = Delivery.objects.filter(event=OuterRef("pk")).exclude(status=Delivery.Status.SUCCEEDED)
    # By event id alone: the log's key leads with it, so this is one index probe per partition.
    logged = EventLog.objects.filter(event_id=OuterRef("pk"))
    with transaction.atomic():
        ids = list(
            OutboxEvent.objects.filter(status=OutboxEvent.Status.DISPATCHED, dispatched_at__lt=cutoff)
            .filter(~Exists(unfinished), Exists(logged))
            .order_by("dispatched_at")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return 0
        delete_events(ids)
    return len(ids)


def delete_events(ids: list[int]) -> int:
    """Delete these events with their deliveries and attempts, in the caller's transaction.

    Leaf tables first, each as one DELETE: no ORM collector loading the rows (and no signals:
    nothing listens to these tables). Returns the number of events deleted.

    The deliveries are locked before anything is deleted. A worker running one holds its lock
    and records the attempt in the same transaction: deleting the attempts first would miss
    that attempt, committed while the delivery delete waited for the worker, and the commit
    would then fail on the attempt's foreign key (seen under `make chaos` with deletes: a 500
    on DELETE /api/me/). Locked first, the delete waits for the run, then sees its attempt.
    """
    attempts, deliveries, events = (m._meta.db_table for m in (DeliveryAttempt, Delivery, OutboxEvent))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {deliveries} WHERE event_id = ANY(%s) ORDER BY id FOR UPDATE",  # noqa: S608
            [ids],
        )
        cursor.execute(
            f"DELETE FROM {attempts} WHERE delivery_id IN "  # noqa: S608 - our own table names
            f"(SELECT id FROM {deliveries} WHERE event_id = ANY(%s))",
            [ids],
        )
        cursor.execute(f"DELETE FROM {deliveries} WHERE event_id = ANY(%s)", [ids])  # noqa: S608
        cursor.execute(f"DELETE FROM {events} WHERE id = ANY(%s)", [ids])  # noqa: S608
        return cursor.rowcount


def purge(
    older_than_days: float | None = None, batch_size: int | None = None, max_batches: int = 1000
) -> int:
    total = 0
    for _ in range(max_batches):
        deleted = purge_batch(older_than_days, batch_size)
        total += deleted
        if not deleted:
            break
    if total:
        logger.info("outbox retention: deleted %d finished events", total)
    return total
