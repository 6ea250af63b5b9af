"""The body of a subscriber's Celery task: run its deliveries, or send the message again
when the database or broker is away.

When the database goes away in the middle of a message, the wrapper cannot even record
the failure: nothing of the message was committed but what earlier group commits hold,
and its deliveries are still dispatched. The Celery message itself is then retried,
after 0.5 s and doubling up to INFRASTRUCTURE_RETRY_MAX_SECONDS, with no limit, so its
deliveries run again as soon as the database answers instead of waiting for the
sweeper's lease.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from celery import Task as CeleryTask
from django.db import DatabaseError, connections

from . import conf
from .delivery import run_deliveries
from .errors import cause_matching, is_infrastructure_fault

logger = logging.getLogger("outbox.delivery")  # one logger name for a delivery's whole story


def run_message(
    task: CeleryTask, subscriber_name: str, delivery_ids: Sequence[int], *, express: bool = False
) -> dict[str, int]:
    """The body of a subscriber's Celery task: run the deliveries, or send the message again
    later when the database or broker is away."""
    try:
        return run_deliveries(
            subscriber_name,
            delivery_ids,
            celery_task_id=task.request.id or "",
            worker=task.request.hostname or "",
            express=express,
        )
    except Exception as exc:
        if cause_matching(exc, is_infrastructure_fault) is None:
            raise
        _close_broken_connections()
        retries = task.request.retries or 0
        delay = min(conf.get("INFRASTRUCTURE_RETRY_MAX_SECONDS"), 0.5 * 2.0 ** min(retries, 16))
        logger.warning(
            "outbox: %s deliveries %s could not be recorded (%s: %s); the message runs again in %.1fs",
            subscriber_name,
            list(delivery_ids)[:20],
            type(exc).__name__,
            str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            delay,
            extra={"delivery_ids": list(delivery_ids), "subscriber": subscriber_name},
        )
        # If the broker is away too, this raises and the message is gone: its deliveries
        # stay dispatched, and the next message for the subscriber or the sweeper takes them.
        raise task.retry(exc=exc, countdown=delay, max_retries=None) from exc


def _close_broken_connections() -> None:
    """Drop connections a fault left unusable, so the retry opens fresh ones."""
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(DatabaseError):
            conn.close()
