"""Operator actions on the outbox; the admin and the `outbox` command both call these."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from . import counts, registry
from .dispatch import redispatch
from .models import Delivery, OutboxEvent

logger = logging.getLogger(__name__)


def retry_deliveries(deliveries: QuerySet[Delivery] | Iterable[int]) -> int:
    """Re-dispatch dead (or waiting) deliveries now, with a fresh retry budget.

    Succeeded deliveries are never re-run here: use `replay` for that. Their
    attempt history stays; the attempts counter restarts so the retry policy
    applies again in full.
    """
    qs = deliveries if isinstance(deliveries, QuerySet) else Delivery.objects.filter(id__in=list(deliveries))
    pairs = redispatch(
        qs.filter(status__in=[Delivery.Status.DEAD, Delivery.Status.PENDING]), fresh_budget=True
    )
    logger.info(
        "outbox: %d deliveries re-dispatched by an operator: %s", len(pairs), [i for _, i in pairs][:20]
    )
    return len(pairs)


def dead_deliveries(subscriber: str | None = None, ids: Iterable[int] = ()) -> QuerySet[Delivery]:
    """The dead deliveries an operator asked to retry: all, one subscriber's, or these ids."""
    qs = Delivery.objects.filter(status=Delivery.Status.DEAD)
    if subscriber:
        qs = qs.filter(subscriber=subscriber)
    if ids := list(ids):
        qs = qs.filter(id__in=ids)
    return qs


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
    owned = list(replay_events(subscriber_name, since, until).order_by("id").values_list("id", "owner_key"))
    total = 0
    for start in range(0, len(owned), chunk_size):
        chunk = [event_id for event_id, _ in owned[start : start + chunk_size]]
        # Events from before this subscriber existed get their delivery row first.
        Delivery.objects.bulk_create(
            [
                Delivery(event_id=i, subscriber=sub.name, dispatched_at=timezone.now(), owner_key=owner)
                for i, owner in owned[start : start + chunk_size]
            ],
            ignore_conflicts=True,
        )
        pairs = redispatch(
            Delivery.objects.filter(event_id__in=chunk, subscriber=sub.name), fresh_budget=True
        )
        total += len(pairs)
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
    pending = counts.pending_events()
    by_pair = counts.deliveries_by_subscriber_and_status()
    names = sorted({s.name for s in registry.all_subscribers()} | {name for name, _ in by_pair})
    queues = {s.name: s.queue for s in registry.all_subscribers()}
    return OutboxStatus(
        pending_events=pending.count,
        oldest_pending_age_seconds=pending.oldest_age_seconds,
        subscribers=[
            SubscriberStatus(
                name=name,
                queue=queues.get(name, "(not registered)"),
                dispatched=by_pair.get((name, Delivery.Status.DISPATCHED), 0),
                pending=by_pair.get((name, Delivery.Status.PENDING), 0),
                succeeded=by_pair.get((name, Delivery.Status.SUCCEEDED), 0),
                dead=by_pair.get((name, Delivery.Status.DEAD), 0),
            )
            for name in names
        ],
    )
