"""Events and deliveries as the relay leaves them, for tests that run the relay or the delivery
wrapper themselves."""

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


def owned_pending(owner: str, n: int) -> list[OutboxEvent]:
    """`n` pending task.completed events of `owner`, in one insert (ids in order)."""
    return OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                type="task.completed",
                aggregate_type="tasks_app.task",
                aggregate_id=f"{owner}-{i}",
                payload={"version": 1, "user_id": owner, "task_id": f"{owner}-{i}"},
                owner_key=owner,
            )
            for i in range(n)
        ]
    )


def owned_waiting(owner: str, n: int, subscriber: str, express: bool = False) -> list[Delivery]:
    """`n` events of `owner`, relayed: dispatched, with a delivery each for `subscriber`."""
    events = owned_pending(owner, n)
    OutboxEvent.objects.filter(id__in=[e.id for e in events]).update(status="dispatched")
    return Delivery.objects.bulk_create(
        [
            Delivery(
                event=e, subscriber=subscriber, dispatched_at=timezone.now(), owner_key=owner, express=express
            )
            for e in events
        ]
    )
