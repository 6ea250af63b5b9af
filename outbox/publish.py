"""Writing events: `publish()` adds one to the caller's transaction and kicks the relay on commit."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Model

from . import conf
from .models import OutboxEvent

logger = logging.getLogger(__name__)


class OutsideTransaction(RuntimeError):
    """publish() was called with no transaction open: the event could outlive or miss its change."""


def publish(
    event_type: str,
    aggregate: Model,
    payload: dict[str, Any],
    *,
    version: int = 1,
    using: str = "default",
) -> OutboxEvent:
    """Record `event_type` about `aggregate` in the current transaction.

    The event becomes visible to the relay exactly when the caller's transaction
    commits, and vanishes with it if it rolls back: that is the whole guarantee.
    """
    if not transaction.get_connection(using).in_atomic_block:
        raise OutsideTransaction(f"publish({event_type!r}) must run inside transaction.atomic()")
    # Round-trip through JSON now, so a payload that would not survive the trip
    # fails in the request that made it, not later in a worker.
    body = json.loads(json.dumps({**payload, "type": event_type, "version": version}, cls=DjangoJSONEncoder))
    event = OutboxEvent.objects.using(using).create(
        type=event_type,
        version=version,
        aggregate_type=aggregate._meta.label_lower,
        aggregate_id=str(aggregate.pk),
        payload=body,
    )
    _kick_on_commit(using)
    return event


def _kick_on_commit(using: str) -> None:
    if not conf.get("KICK"):
        return
    conn = transaction.get_connection(using)
    # One kick per transaction, however many events it wrote. Django drops the
    # callback itself if the transaction rolls back.
    if any(func is kick_relay for _, func, _ in conn.run_on_commit):
        return
    transaction.on_commit(kick_relay, using=using, robust=True)


def kick_relay() -> None:
    """Ask for a relay run now. Best effort: if it fails, the beat schedule runs it anyway."""
    from .tasks import relay

    try:
        relay.apply_async(queue=conf.get("QUEUE"), retry=False, expires=30)
    except Exception:
        logger.warning("outbox: relay kick failed; the beat schedule will pick the event up", exc_info=True)
