"""Handing deliveries to Celery: one message per subscriber per chunk of deliveries."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from amqp.exceptions import MessageNacked
from celery import current_app
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import coalesce as coalescing
from . import conf, registry
from .errors import cause_matching
from .models import Delivery

logger = logging.getLogger(__name__)


class BrokerRefused(Exception):
    """The broker answered a publish with a refusal (a RabbitMQ nack: a full queue, a policy)."""


def publish_deliveries(
    pairs: Iterable[tuple[str, int]], *, coalesce: bool = False, express: bool = False
) -> int:
    """Publish (subscriber, delivery id) pairs; returns the number of messages sent.

    Called only after the transaction that marked the deliveries dispatched has
    committed, so a worker never receives an id it cannot yet read. If this fails
    or the process dies first, the deliveries stay dispatched and the sweeper
    re-publishes them when their lease runs out: late, never lost.

    With publisher confirms (RabbitMQ) a message counts as sent once the broker has
    accepted it. One the broker refuses raises BrokerRefused, after the other
    subscribers' messages have been tried: one full queue holds up no other. A
    broker that cannot be reached or does not confirm in time raises at once.

    With `coalesce` (the relay's fan-out), a subscriber whose previous message still waits in
    the broker gets none: that one takes these deliveries with the others waiting
    (outbox/coalesce.py). Only when they fit in one message.

    With `express`, the messages go to the subscribers' express queues (outbox/express.py).
    """
    by_subscriber: dict[str, list[int]] = defaultdict(list)
    for name, delivery_id in pairs:
        by_subscriber[name].append(delivery_id)
    if not by_subscriber:
        return 0
    size = conf.get("MESSAGE_BATCH_SIZE")
    sent = 0
    refused: list[int] = []
    # One broker connection for the whole fan-out, not one per message.
    with current_app.producer_or_acquire() as producer:
        for name, ids in by_subscriber.items():
            try:
                sub = registry.get(name)
            except KeyError:
                logger.error(
                    "outbox: no subscriber %r registered here; %d deliveries wait for the sweeper",
                    name,
                    len(ids),
                )
                continue
            lane, queue = ("express", sub.express_queue) if express else ("", sub.queue)
            marked = coalesce and len(ids) <= size and coalescing.enabled()
            if marked and not coalescing.first_in_queue(name, lane):
                logger.debug("outbox: %d deliveries of %s join the message already queued", len(ids), name)
                continue
            for start in range(0, len(ids), size):
                chunk = ids[start : start + size]
                try:
                    sub.task.apply_async(
                        args=[chunk],
                        kwargs={"express": True} if express else {},
                        queue=queue,
                        producer=producer,
                    )
                except Exception as exc:
                    if marked:
                        coalescing.not_sent(name, lane)
                    # A refusal is a nack, which kombu re-raises (after its publish retries) as
                    # an OperationalError; anything else means the broker is away.
                    if cause_matching(exc, lambda e: isinstance(e, MessageNacked)) is None:
                        raise  # the broker is away or did not answer in time: so are the others
                    logger.error(
                        "outbox: the broker refused %d deliveries of %s (queue %s); they stay "
                        "dispatched and the sweeper re-publishes them after their lease: %s",
                        len(chunk),
                        name,
                        queue,
                        chunk[:20],
                        extra={"delivery_ids": chunk, "subscriber": name},
                    )
                    refused.extend(chunk)
                    continue
                sent += 1
                logger.debug("outbox: published %d deliveries of %s", len(chunk), name)
    if refused:
        raise BrokerRefused(f"the broker refused {len(refused)} deliveries (for the sweeper): {refused[:20]}")
    return sent


def redispatch(
    deliveries: QuerySet[Delivery], *, fresh_budget: bool, limit: int | None = None
) -> list[tuple[str, int]]:
    """Mark these deliveries dispatched again and publish them: the sweeper's re-publish, an
    operator's retry and a replay all come here. Rows a worker holds right now are skipped,
    and the queryset's conditions (a status, a lease) are checked under the row lock.

    `fresh_budget` restarts the attempts counter, so the retry policy applies again in full
    (an operator's retry, a replay); the sweeper keeps it. Returns the (subscriber, id) pairs.
    """
    with transaction.atomic():
        locked = deliveries.select_for_update(skip_locked=True).order_by()
        pairs = list(locked.values_list("subscriber", "id")[:limit])
        if not pairs:
            return []
        fields: dict[str, object] = {
            "status": Delivery.Status.DISPATCHED,
            "dispatched_at": timezone.now(),
            "next_attempt_at": None,
            "completed_at": None,
        }
        if fresh_budget:
            fields["attempts"] = 0
            fields["infrastructure_faults"] = 0
        Delivery.objects.filter(id__in=[i for _, i in pairs]).update(**fields)
    publish_deliveries(pairs)
    return pairs
