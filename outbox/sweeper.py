"""The sweeper: re-publishes deliveries whose message was lost, and dispatches due retries.

A dispatched delivery that has not finished within its lease lost its message
(Redis restarted without persistence, a worker was killed, the relay died after
committing) or is still queued behind a long backlog. Either way it is published
again: a duplicate is harmless, a loss is not. Rows a worker is running right now
are locked and skipped.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from . import conf
from .dispatch import publish_deliveries
from .models import Delivery

logger = logging.getLogger(__name__)


def sweep(lease_seconds: float | None = None, batch_size: int | None = None) -> dict[str, int]:
    lease = conf.get("LEASE_SECONDS") if lease_seconds is None else lease_seconds
    batch_size = batch_size or conf.get("SWEEP_BATCH_SIZE")
    now = timezone.now()
    claimable = Delivery.objects.select_for_update(skip_locked=True).order_by()
    with transaction.atomic():
        due = list(
            claimable.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now).values_list(
                "id", "subscriber"
            )[:batch_size]
        )
        expired = list(
            claimable.filter(
                status=Delivery.Status.DISPATCHED, dispatched_at__lt=now - timedelta(seconds=lease)
            ).values_list("id", "subscriber")[:batch_size]
        )
        pairs = due + expired
        if not pairs:
            return {"retries": 0, "expired": 0}
        Delivery.objects.filter(id__in=[i for i, _ in pairs]).update(
            status=Delivery.Status.DISPATCHED, dispatched_at=now, next_attempt_at=None
        )
    publish_deliveries((name, i) for i, name in pairs)
    if expired:
        logger.warning(
            "outbox sweeper: re-published %d deliveries past their lease: %s",
            len(expired),
            [i for i, _ in expired][:20],
        )
    if due:
        logger.info("outbox sweeper: dispatched %d due retries", len(due))
    return {"retries": len(due), "expired": len(expired)}
