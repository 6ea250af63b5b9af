"""The sweeper: re-publishes deliveries whose message was lost, and dispatches due retries.

A dispatched delivery that has not finished within its lease (LEASE_SECONDS) lost
its message (Redis restarted without persistence, a worker was killed, the relay died
after committing) or is still queued behind a backlog. The broker tells which is
likely: while a subscriber's queue still holds messages, its deliveries are waiting,
not lost, and re-publishing them would only add duplicates to the backlog (at 100,000
events that was most of the work); so they get the long lease (LEASE_MAX_SECONDS)
instead, which still bounds how late a lost message can be. Re-published or not, a
duplicate is harmless and a loss is not. Rows a worker is running right now are
locked and skipped.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import current_app
from django.db.models import Q
from django.utils import timezone

from . import conf, registry
from .dispatch import redispatch
from .models import Delivery

logger = logging.getLogger(__name__)


def queues_with_messages(queues: list[str]) -> set[str]:
    """The queues that hold messages not yet taken by a worker (broker-agnostic: a passive
    declare answers with the count on Redis and RabbitMQ alike)."""
    waiting = set()
    with current_app.connection_for_read() as connection:
        channel = connection.default_channel
        for queue in queues:
            try:
                if channel.queue_declare(queue=queue, passive=True).message_count:
                    waiting.add(queue)
            except connection.channel_errors:
                # Never declared: nothing waits in it. (RabbitMQ closes the channel over a
                # missing queue; py-amqp reopens it, so the next queue is still read.)
                pass
    return waiting


def sweep(lease_seconds: float | None = None, batch_size: int | None = None) -> dict[str, int]:
    lease = conf.get("LEASE_SECONDS") if lease_seconds is None else lease_seconds
    lease_max = max(lease, conf.get("LEASE_MAX_SECONDS"))
    batch_size = batch_size or conf.get("SWEEP_BATCH_SIZE")
    waiting = queues_with_messages(registry.queues())
    backlogged = [s.name for s in registry.all_subscribers() if s.queue in waiting]
    now = timezone.now()
    due = redispatch(
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now),
        fresh_budget=False,
        limit=batch_size,
    )
    expired = redispatch(
        Delivery.objects.filter(status=Delivery.Status.DISPATCHED).filter(
            Q(dispatched_at__lt=now - timedelta(seconds=lease_max))
            | (Q(dispatched_at__lt=now - timedelta(seconds=lease)) & ~Q(subscriber__in=backlogged))
        ),
        fresh_budget=False,
        limit=batch_size,
    )
    if expired:
        logger.warning(
            "outbox sweeper: re-published %d deliveries past their lease: %s",
            len(expired),
            [i for _, i in expired][:20],
        )
    if due:
        logger.info("outbox sweeper: dispatched %d due retries", len(due))
    return {"retries": len(due), "expired": len(expired)}
