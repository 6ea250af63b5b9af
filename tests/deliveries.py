"""Deliveries as the relay leaves them, for tests that run the delivery wrapper themselves."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from outbox.models import Delivery, OutboxEvent


def dispatched(subscriber: str, events: Iterable[OutboxEvent]) -> list[int]:
    """One delivery of `subscriber` per event, dispatched (again, for one already there): the
    ids a message would carry, in the events' order."""
    ids = [
        Delivery.objects.get_or_create(
            event=e, subscriber=subscriber, defaults={"dispatched_at": timezone.now()}
        )[0].pk
        for e in events
    ]
    Delivery.objects.filter(pk__in=ids).update(status=Delivery.Status.DISPATCHED)
    return ids
