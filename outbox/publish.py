"""Writing events: `publish()` adds one to the caller's transaction and kicks the relay on commit."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from django.core.cache import caches
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Model

from . import conf, fairness, telemetry
from .eventlog.writer import log_event
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
) -> OutboxEvent:
    """Record `event_type` about `aggregate` in the current transaction.

    The event becomes visible to the relay exactly when the caller's transaction
    commits, and vanishes with it if it rolls back: that is the whole guarantee. Its copy in
    the event log is written in the same transaction, under the same guarantee.
    """
    # One database: the relay, the workers and retention all use the default one, so an
    # event written elsewhere would never be seen.
    if not transaction.get_connection().in_atomic_block:
        raise OutsideTransaction(f"publish({event_type!r}) must run inside transaction.atomic()")
    # Round-trip through JSON now, so a payload that would not survive the trip
    # fails in the request that made it, not later in a worker.
    text = json.dumps({**payload, "type": event_type, "version": version}, cls=DjangoJSONEncoder)
    event = OutboxEvent.objects.create(
        type=event_type,
        version=version,
        aggregate_type=aggregate._meta.label_lower,
        aggregate_id=str(aggregate.pk),
        payload=json.loads(text),
        trace_context=telemetry.current_context(),
        owner_key=fairness.owner_of(payload),
    )
    # The durable copy, in this same transaction: it commits (or rolls back) with the event, so
    # every event is logged exactly once whatever the relay does later (crash, replay).
    log_event(event, text)
    _kick_on_commit()
    return event


def _kick_on_commit() -> None:
    if not conf.get("KICK"):
        return
    conn = transaction.get_connection()
    # One kick per transaction, however many events it wrote. Django drops the
    # callback itself if the transaction rolls back.
    if any(func is kick_relay for _, func, _ in conn.run_on_commit):
        return
    transaction.on_commit(kick_relay, robust=True)


# Set while a kicked relay run waits in the queue; the run clears it before it claims.
KICK_PENDING_KEY = "outbox:relay-kick-pending"


def kick_relay() -> None:
    """Ask for a relay run now. Best effort: if it fails, the beat schedule runs it anyway.

    Kicks coalesce: while one kicked run is still queued, another would find nothing that
    run will not, so none is sent. The run clears the mark before it claims events, so
    an event committed before a skipped kick is always seen by that run; an event
    committed after the mark was cleared sends a run of its own. Under load this turns
    one relay run per commit (each fanning out one event, one delivery per message) into
    one per relay cycle, carrying everything committed meanwhile. The mark expires after
    KICK_PENDING_SECONDS, so a lost kick holds the next ones back no longer than that
    (and the beat schedule relays every second anyway).
    """
    from .tasks import relay

    cache = caches[conf.get("CACHE")]
    try:
        if not cache.add(KICK_PENDING_KEY, 1, timeout=conf.get("KICK_PENDING_SECONDS")):
            return
    except Exception:
        logger.warning("outbox: cannot reach the cache to coalesce kicks; kicking anyway", exc_info=True)
    try:
        relay.apply_async(queue=conf.get("QUEUE"), retry=False, expires=30)
    except Exception:
        logger.warning("outbox: relay kick failed; the beat schedule will pick the event up", exc_info=True)
        with contextlib.suppress(Exception):
            cache.delete(KICK_PENDING_KEY)  # no run is queued: let the next commit try again


def kick_received() -> None:
    """Called by the relay task before it claims: kicks from now on need a run of their own."""
    try:
        caches[conf.get("CACHE")].delete(KICK_PENDING_KEY)
    except Exception:
        logger.warning("outbox: cannot clear the kick mark; it expires by itself", exc_info=True)
