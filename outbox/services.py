"""Operator actions on the outbox; the admin and the `outbox` command both call these."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from . import registry
from .dispatch import publish_deliveries
from .models import Delivery, OutboxEvent

logger = logging.getLogger(__name__)


def retry_deliveries(deliveries: QuerySet[Delivery] | Iterable[int]) -> int:
    """Re-dispatch dead (or waiting) deliveries now, with a fresh retry budget.

    Succeeded deliveries are never re-run here: use `replay` for that. Their
    attempt history stays; the attempts counter restarts so the retry policy
    applies again in full.
    """
    qs = deliveries if isinstance(deliveries, QuerySet) else Delivery.objects.filter(id__in=list(deliveries))
    now = timezone.now()
    with transaction.atomic():
        pairs = list(
            qs.filter(status__in=[Delivery.Status.DEAD, Delivery.Status.PENDING])
            .select_for_update(skip_locked=True)
            .order_by()
            .values_list("subscriber", "id")
        )
        Delivery.objects.filter(id__in=[i for _, i in pairs]).update(
            status=Delivery.Status.DISPATCHED,
            dispatched_at=now,
            next_attempt_at=None,
            completed_at=None,
            attempts=0,
        )
    publish_deliveries(pairs)
    logger.info(
        "outbox: %d deliveries re-dispatched by an operator: %s", len(pairs), [i for _, i in pairs][:20]
    )
    return len(pairs)


def replay_events(
    subscriber_name: str, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[OutboxEvent]:
    """The past events a replay of this subscriber covers."""
    events = OutboxEvent.objects.filter(
        type__in=registry.get(subscriber_name).events, status=OutboxEvent.Status.DISPATCHED
    )
    if since:
        events = events.filter(created_at__gte=since)
    if until:
        events = events.filter(created_at__lt=until)
    return events


def replay(
    subscriber_name: str,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 500,
) -> int:
    """Run one subscriber again over past events of its types in [since, until).

    Subscribers are idempotent and write from current state, so a replay repairs
    what is missing or stale and changes nothing that is already right. Events
    that never had a delivery for this subscriber (it did not exist yet) get one.
    """
    sub = registry.get(subscriber_name)
    event_ids = list(replay_events(subscriber_name, since, until).order_by("id").values_list("id", flat=True))
    total = 0
    for start in range(0, len(event_ids), chunk_size):
        chunk = event_ids[start : start + chunk_size]
        now = timezone.now()
        with transaction.atomic():
            Delivery.objects.bulk_create(
                [Delivery(event_id=i, subscriber=sub.name, dispatched_at=now) for i in chunk],
                ignore_conflicts=True,
            )
            ids = list(
                Delivery.objects.filter(event_id__in=chunk, subscriber=sub.name)
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)
            )
            Delivery.objects.filter(id__in=ids).update(
                status=Delivery.Status.DISPATCHED, dispatched_at=now, next_attempt_at=None, attempts=0
            )
        publish_deliveries((sub.name, i) for i in ids)
        total += len(ids)
        if progress:
            progress(len(chunk))
    logger.info("outbox: replayed %d %s deliveries", total, sub.name)
    return total


@dataclass(frozen=True)
class SubscriberStatus:
    name: str
    queue: str
    dispatched: int
    pending: int
    succeeded: int
    dead: int


@dataclass(frozen=True)
class OutboxStatus:
    pending_events: int
    oldest_pending_age_seconds: float | None
    subscribers: list[SubscriberStatus]


def status() -> OutboxStatus:
    oldest = OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).aggregate(
        n=Count("id"), oldest=Min("created_at")
    )
    counts = {
        row["subscriber"]: row
        for row in Delivery.objects.order_by()
        .values("subscriber")
        .annotate(
            dispatched=Count("id", filter=Q(status=Delivery.Status.DISPATCHED)),
            pending=Count("id", filter=Q(status=Delivery.Status.PENDING)),
            succeeded=Count("id", filter=Q(status=Delivery.Status.SUCCEEDED)),
            dead=Count("id", filter=Q(status=Delivery.Status.DEAD)),
        )
    }
    names = sorted({s.name for s in registry.all_subscribers()} | set(counts))
    queues = {s.name: s.queue for s in registry.all_subscribers()}
    return OutboxStatus(
        pending_events=oldest["n"],
        oldest_pending_age_seconds=(timezone.now() - oldest["oldest"]).total_seconds()
        if oldest["oldest"]
        else None,
        subscribers=[
            SubscriberStatus(
                name=name,
                queue=queues.get(name, "(not registered)"),
                dispatched=counts.get(name, {}).get("dispatched", 0),
                pending=counts.get(name, {}).get("pending", 0),
                succeeded=counts.get(name, {}).get("succeeded", 0),
                dead=counts.get(name, {}).get("dead", 0),
            )
            for name in names
        ],
    )
