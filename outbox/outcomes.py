"""Recording what became of a delivery: success, a retry scheduled, or dead, with an attempt
row each; or deferred (the handler asked to run later), which is no attempt at all.

Transient errors (the subscriber's own, and the database's or broker's, which never use
up the retries) schedule a retry with exponential backoff and jitter; the sweeper
dispatches it when due. A permanent error, or the last retry of a transient one, makes
the delivery dead, with the reason, for an operator.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone

from . import telemetry
from .errors import Deferred, is_infrastructure_fault
from .models import Delivery, DeliveryAttempt
from .registry import RetryPolicy, Subscriber

logger = logging.getLogger("outbox.delivery")  # one logger name for a delivery's whole story

ERROR_LIMIT = 2000
TRACEBACK_LIMIT = 4000


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """Exponential backoff, capped; with jitter, a random point in the upper half of it."""
    delay = min(policy.backoff_max, policy.backoff * 2.0 ** min(attempt - 1, 32))
    return random.uniform(delay / 2, delay) if policy.jitter else delay


def _attempt(
    delivery: Delivery,
    outcome: str,
    started_at: datetime,
    duration_ms: float,
    error: BaseException | None = None,
) -> telemetry.Attempt:
    event = delivery.event
    return telemetry.Attempt(
        carrier=event.trace_context or {},
        event_id=event.id,
        event_type=event.type,
        delivery_id=delivery.id,
        subscriber=delivery.subscriber,
        number=delivery.attempts,
        outcome=outcome,
        started_at=started_at,
        duration_ms=duration_ms,
        error=error,
    )


def _ids(delivery: Delivery) -> dict[str, object]:
    """Log fields that let one completion be followed from relay to worker (JSON logs show them)."""
    return {"event_id": delivery.event_id, "delivery_id": delivery.id, "subscriber": delivery.subscriber}


def record_success(done: list[tuple[Delivery, datetime, float]], context: dict[str, str]) -> None:
    """Mark (delivery, started at, duration in ms) succeeded, with an attempt row each."""
    now = timezone.now()
    deliveries = [d for d, _, _ in done]
    for d in deliveries:
        d.attempts += 1
        d.status = Delivery.Status.SUCCEEDED
        d.completed_at = now
        d.next_attempt_at = None
        d.last_error = ""
    # One plain UPDATE: every row gets the same values (bulk_update's CASE per row cost
    # more than the rest of a no-op delivery put together).
    Delivery.objects.filter(id__in=[d.id for d in deliveries]).update(
        attempts=F("attempts") + 1,
        status=Delivery.Status.SUCCEEDED,
        completed_at=now,
        next_attempt_at=None,
        last_error="",
    )
    DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                delivery=d,
                number=d.attempts,
                started_at=started_at,
                duration_ms=duration_ms,
                outcome=DeliveryAttempt.Outcome.SUCCEEDED,
                **context,
            )
            for d, started_at, duration_ms in done
        ]
    )
    telemetry.attempts_recorded(
        [_attempt(d, DeliveryAttempt.Outcome.SUCCEEDED, started_at, ms) for d, started_at, ms in done]
    )
    for d in deliveries:
        logger.info(
            "outbox: delivery %s of %s for event %s succeeded",
            d.id,
            d.subscriber,
            d.event_id,
            extra=_ids(d),
        )


def record_failure(
    sub: Subscriber,
    delivery: Delivery,
    exc: Exception,
    started_at: datetime,
    clock: float,
    context: dict[str, str],
) -> str:
    if isinstance(exc, Deferred):
        return _record_deferral(sub, delivery, exc)
    now = timezone.now()
    delivery.attempts += 1
    error = f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT]
    transient = sub.retry.is_transient(exc)
    # The database or broker being away says nothing about the event: never dead for it, and
    # those tries do not count against the handler's own retry budget.
    infrastructure = is_infrastructure_fault(exc)
    delivery.infrastructure_faults += infrastructure
    own_failures = delivery.attempts - delivery.infrastructure_faults
    if transient and (infrastructure or own_failures <= sub.retry.max_retries):
        delay = backoff_seconds(sub.retry, delivery.attempts)
        delivery.status = Delivery.Status.PENDING
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        delivery.last_error = error
        outcome = DeliveryAttempt.Outcome.RETRY
        logger.warning(
            "outbox: delivery %s of %s for event %s failed (attempt %d), retry in %.1fs: %s",
            delivery.id,
            sub.name,
            delivery.event_id,
            delivery.attempts,
            delay,
            error,
            extra=_ids(delivery),
        )
    else:
        reason = (
            f"retries exhausted after {delivery.attempts} attempts: {error}"
            if transient
            else f"permanent error: {error}"
        )
        delivery.status = Delivery.Status.DEAD
        delivery.next_attempt_at = None
        delivery.completed_at = now
        delivery.last_error = reason[:ERROR_LIMIT]
        outcome = DeliveryAttempt.Outcome.DEAD
        logger.error(
            "outbox: delivery %s of %s for event %s is dead: %s",
            delivery.id,
            sub.name,
            delivery.event_id,
            reason,
            extra=_ids(delivery),
        )
    delivery.save(
        update_fields=[
            "attempts",
            "infrastructure_faults",
            "status",
            "next_attempt_at",
            "completed_at",
            "last_error",
        ]
    )
    duration_ms = (time.perf_counter() - clock) * 1000
    telemetry.attempts_recorded([_attempt(delivery, str(outcome), started_at, duration_ms, exc)])
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        started_at=started_at,
        duration_ms=duration_ms,
        outcome=outcome,
        error=error,
        traceback="".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:],
        **context,
    )
    return str(outcome)


def _record_deferral(sub: Subscriber, delivery: Delivery, deferral: Deferred) -> str:
    delivery.status = Delivery.Status.PENDING
    delivery.next_attempt_at = deferral.until
    delivery.last_error = str(deferral)[:ERROR_LIMIT]
    delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
    logger.info(
        "outbox: delivery %s of %s for event %s %s",
        delivery.id,
        sub.name,
        delivery.event_id,
        deferral,
        extra=_ids(delivery),
    )
    return "deferred"
