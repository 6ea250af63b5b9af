"""The delivery wrapper every subscriber runs in, on the worker.

For each delivery id in a message it:
- claims the delivery row (FOR UPDATE SKIP LOCKED), and skips it unless it is
  still dispatched: a delivery that already succeeded, went dead, waits for a
  retry, or is being run by another worker right now is left alone. That is what
  makes a duplicated message harmless;
- runs the handler in a savepoint of the same transaction that marks the delivery
  succeeded, so a handler's database writes and its "done" mark commit together
  or not at all (a worker killed mid-handler leaves nothing half-done);
- takes, along with the message's own deliveries, others of the same subscriber that
  are dispatched and waiting (up to MESSAGE_BATCH_SIZE), so the batch grows with the
  subscriber's backlog even when every message carries one delivery. With FAIR_SHARE they
  are dealt in turns across owners (outbox/fairness.py) and the light owners' run first, in
  a batch of their own; an express message (outbox/express.py) takes only express ones;
- under load, when a message carries many deliveries, runs several of them in one
  transaction (a savepoint each, so one failure stays its own), committing every
  GROUP_COMMIT_SECONDS: one claim, one success update and one commit per group
  instead of per delivery, while no row stays locked for long. Subscribers with
  `atomic=False` (side effects outside the database) keep a transaction each (the same
  loop, with a group of one);
- a subscriber with a batch handler gets the batch in one call (a constant number of
  queries for the lot) in the claim's transaction; the events it leaves (a push deferred by
  quiet hours) run one by one after it, and a batch that raises runs again one by one, so
  a bad event fails alone. With `prepare`, slow work that needs no lock (an LLM writing)
  runs before the claim, outside any transaction, and the batch handler records it under
  its locks;
- on failure rolls the handler's writes back and records the attempt (`outcomes`);
- when the outcome cannot be recorded at all (the database went away mid-message),
  raises, and `message.run_message` sends the Celery message again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

from django.db import DatabaseError, transaction
from django.utils import timezone

from . import coalesce, conf, fairness, registry
from .errors import is_infrastructure_fault
from .events import Event
from .models import Delivery
from .outcomes import record_failure, record_success
from .registry import Subscriber

logger = logging.getLogger(__name__)


def _reraise_if_database_gone(exc: Exception) -> None:
    """A handler's database fault that also broke the transaction cannot be recorded in it:
    leave it to `message.run_message`, which sends the message again once the database answers."""
    if is_infrastructure_fault(exc) and transaction.get_connection().needs_rollback:
        raise exc


def run_deliveries(
    subscriber_name: str,
    delivery_ids: Sequence[int],
    *,
    celery_task_id: str = "",
    worker: str = "",
    express: bool = False,
) -> dict[str, int]:
    """Run one subscriber over the given deliveries (and others waiting); returns counts by outcome.
    `express`: the message came down the express lane (outbox/express.py)."""
    sub = registry.get(subscriber_name)
    own = frozenset(delivery_ids)  # a skip is news for these; for the ones taken while waiting, it is not
    lane = "express" if express else ""
    coalescing = coalesce.enabled()
    if coalescing:
        coalesce.started(sub.name, lane)  # before reading what waits: see outbox/coalesce.py
    context = {"celery_task_id": celery_task_id[:64], "worker": worker[:200]}
    dealing = fairness.enabled() and conf.get("TAKE_WAITING")
    full = False
    try:
        if express and conf.get("TAKE_WAITING"):
            counts, full = _run_express(sub, own, context)
            return dict(counts)
        if dealing:
            counts, full = _run_in_turns(sub, own, context)
            return dict(counts)
        taken = _with_waiting(sub, delivery_ids)
        full = len(taken) >= conf.get("MESSAGE_BATCH_SIZE")
        return dict(_run_part(sub, taken, context, own))
    finally:
        if full and (coalescing or dealing):
            # A full batch: more may wait whose messages were coalesced into this one or, taken
            # in turns, that this message carried and other owners' work took the place of.
            _follow_up(sub, coalescing, lane)


def _run_in_turns(sub: Subscriber, own: frozenset[int], context: dict[str, str]) -> tuple[Counter[str], bool]:
    """Up to MESSAGE_BATCH_SIZE of the subscriber's waiting deliveries, dealt in turns across owners
    (outbox/fairness.py), the message's own among them, fresh work first. Returns the counts,
    and whether the deal was full (so more may wait)."""
    counts: Counter[str] = Counter()
    size = conf.get("MESSAGE_BATCH_SIZE")
    taken: list[tuple[int, str]] = []
    try:
        # One owner waiting: its oldest, read with the owners (never None with `oldest`).
        taken = fairness.dealt("deliveries", size, oldest=True, subscriber=sub.name) or []
        plan = fairness.plan(taken)
        for part in (plan.first, plan.rest):
            if part:
                counts.update(_run_part(sub, part, context, own))
        return counts, len(taken) >= size
    finally:
        if (passed_over := own - {i for i, _ in taken}) and (skipped := _skipped(sub, passed_over)):
            counts["skipped"] += skipped


def _run_express(sub: Subscriber, own: frozenset[int], context: dict[str, str]) -> tuple[Counter[str], bool]:
    """An express message (outbox/express.py): its own deliveries and the subscriber's other express
    ones waiting, up to MESSAGE_BATCH_SIZE, in one batch. Returns the counts and whether it was full."""
    taken = _with_waiting(sub, sorted(own), express_only=True)
    return _run_part(sub, taken, context, own), len(taken) >= conf.get("MESSAGE_BATCH_SIZE")


def _skipped(sub: Subscriber, passed_over: frozenset[int]) -> int:
    """Of the message's own deliveries that were not taken, those that are not waiting either
    (done, due a retry, gone): skipped, as a claim would skip them. Those still waiting lost
    their place to other owners' turns, and the follow-up message takes them."""
    waiting = set(
        Delivery.objects.filter(
            id__in=passed_over, subscriber=sub.name, status=Delivery.Status.DISPATCHED
        ).values_list("id", flat=True)
    )
    skipped = sorted(passed_over - waiting)
    for delivery_id in skipped:
        _log_skip(delivery_id, sub)
    return len(skipped)


def _run_part(
    sub: Subscriber, delivery_ids: list[int], context: dict[str, str], own: frozenset[int]
) -> Counter[str]:
    if sub.batch_handler is not None and (len(delivery_ids) > 1 or sub.prepare is not None):
        batched = _run_batch(sub, delivery_ids, context)
        if batched is not None:
            counts, one_by_one = batched
            if one_by_one:
                counts.update(_run_grouped(sub, one_by_one, context, own))
            return counts
    return _run_grouped(sub, delivery_ids, context, own)


def _follow_up(sub: Subscriber, coalescing: bool, lane: str) -> None:
    """This message filled its batch, so more may wait, whose messages were coalesced into this
    one or that it passed over: send the subscriber a message for them (unless one is queued),
    down the same lane."""
    if coalescing and not coalesce.first_in_queue(sub.name, lane):
        return
    try:
        if lane:
            sub.task.apply_async(args=[[]], kwargs={"express": True}, queue=sub.express_queue)
        else:
            sub.task.apply_async(args=[[]], queue=sub.queue)
    except Exception:
        if coalescing:
            coalesce.not_sent(sub.name, lane)
        logger.warning(
            "outbox: no follow-up message for %s; the sweeper takes the rest", sub.name, exc_info=True
        )


def _with_waiting(sub: Subscriber, delivery_ids: Sequence[int], *, express_only: bool = False) -> list[int]:
    """The message's deliveries plus this subscriber's other dispatched ones, oldest first, up to
    MESSAGE_BATCH_SIZE: with FAIR_SHARE off, and (`express_only`: the express ones) for an
    express message. (With FAIR_SHARE on, `fairness.dealt` reads them, one owner's included.)

    The relay runs on every commit, so under steady load its messages carry one delivery
    each, and the queue grows one small message at a time. Taking what is waiting sizes
    the batch by the subscriber's own backlog: one delivery when there is none, a hundred
    (one group commit, one batch-handler call) when there is. The later messages for
    the deliveries taken here find them done and cost one empty claim each.
    """
    room = conf.get("MESSAGE_BATCH_SIZE") - len(delivery_ids)
    if room <= 0 or not conf.get("TAKE_WAITING"):
        return list(delivery_ids)
    waiting = (
        Delivery.objects.filter(subscriber=sub.name, status=Delivery.Status.DISPATCHED)
        .filter(**({"express": True} if express_only else {}))
        .exclude(id__in=delivery_ids)
        .order_by("id")
        .values_list("id", flat=True)[:room]
    )
    return [*delivery_ids, *waiting]


def _claim(subscriber: str, ids: Sequence[int]) -> list[Delivery]:
    return list(
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("event")
        .filter(id__in=ids, subscriber=subscriber, status=Delivery.Status.DISPATCHED)
        .order_by("id")
    )


def _run_grouped(
    sub: Subscriber, delivery_ids: Sequence[int], context: dict[str, str], own: frozenset[int]
) -> Counter[str]:
    """Each delivery in its own savepoint; as many per transaction as fit in the group budget.

    A subscriber that is not atomic gets no savepoint (what its handler wrote before raising
    is kept, committed with the failure) and so a transaction of its own per delivery: a
    budget of zero ends each group after its first delivery.
    """
    budget = conf.get("GROUP_COMMIT_SECONDS") if sub.atomic else 0.0
    counts: Counter[str] = Counter()
    remaining = list(delivery_ids)
    while remaining:
        with transaction.atomic():
            claimed = _claim(sub.name, remaining)
            claimed_ids = {d.id for d in claimed}
            for delivery_id in remaining:
                if delivery_id not in claimed_ids:
                    counts["skipped"] += 1
                    if delivery_id in own:
                        _log_skip(delivery_id, sub)
            remaining = []
            done: list[tuple[Delivery, datetime, float]] = []
            deadline = time.perf_counter() + budget
            for i, delivery in enumerate(claimed):
                if i and time.perf_counter() >= deadline:
                    # Commit what is done; the rest is claimed again by the next group.
                    remaining = [d.id for d in claimed[i:]]
                    break
                started_at, clock = timezone.now(), time.perf_counter()
                try:
                    with transaction.atomic() if sub.atomic else contextlib.nullcontext():
                        sub.handler(Event.of(delivery.event))
                except Exception as exc:  # noqa: BLE001 - every failure is recorded on the delivery
                    _reraise_if_database_gone(exc)
                    counts[record_failure(sub, delivery, exc, started_at, clock, context)] += 1
                    continue
                done.append((delivery, started_at, (time.perf_counter() - clock) * 1000))
            if done:
                record_success(done, context)
                counts["succeeded"] += len(done)
    return counts


def _log_skip(delivery_id: int, sub: Subscriber) -> None:
    logger.info(
        "outbox: delivery %s of %s skipped (done, waiting or running elsewhere)",
        delivery_id,
        sub.name,
        extra={"delivery_id": delivery_id, "subscriber": sub.name},
    )


def _run_batch(
    sub: Subscriber, delivery_ids: Sequence[int], context: dict[str, str]
) -> tuple[Counter[str], list[int]] | None:
    """The claimable deliveries through the batch handler at once.

    Returns the counts and the deliveries the handler left to be run one by one (the failures
    it reported per event are recorded here, as one by one would record them), or None
    for "go one by one" (the handler, or its prepare step, raised). An atomic subscriber's
    batch is all of it or none: when it raises, its whole transaction rolls back, which held
    nothing else but the claim that the one-by-one pass makes again (so no savepoint of its
    own: two round trips a message less). A non-atomic one's keeps what it wrote before
    raising (a push's receipts), and the one-by-one pass skips that work.
    """
    assert sub.batch_handler is not None
    started_at = timezone.now()
    clock = time.perf_counter()
    prepared: object = None
    if sub.prepare is not None:
        # Before the claim, with no transaction open: slow work that needs no lock (an LLM
        # call) holds neither the delivery rows nor a connection idle in a transaction.
        unclaimed = Delivery.objects.select_related("event").filter(
            id__in=delivery_ids, subscriber=sub.name, status=Delivery.Status.DISPATCHED
        )
        try:
            prepared = sub.prepare([Event.of(d.event) for d in unclaimed])
        except Exception:
            logger.warning(
                "outbox: preparing %s deliveries failed; running them one by one", sub.name, exc_info=True
            )
            return None
    with transaction.atomic():
        deliveries = _claim(sub.name, delivery_ids)
        if not deliveries:
            return Counter(skipped=len(delivery_ids)), []
        events = [Event.of(d.event) for d in deliveries]
        try:
            if sub.prepare is not None:
                left = sub.batch_handler(events, prepared)
            else:
                left = sub.batch_handler(events)
        except Exception as exc:
            if sub.atomic:
                # None of the batch is kept, and the claim goes with it: the one-by-one pass claims
                # again, in transactions of its own (where a database gone away is raised).
                transaction.set_rollback(True)
            else:
                _reraise_if_database_gone(exc)
                if isinstance(exc, DatabaseError):
                    # A query failed outside a savepoint of its own: the transaction is broken
                    # (PostgreSQL would turn the commit into a silent rollback anyway), and the
                    # one-by-one pass redoes what it had written.
                    transaction.set_rollback(True)
            logger.warning(
                "outbox: batch of %d %s deliveries failed; retrying them one by one",
                len(deliveries),
                sub.name,
                exc_info=True,
            )
            return None
        failed = {e: exc for e, exc in left.items() if exc is not None} if isinstance(left, Mapping) else {}
        left_events = set(left or ()) - set(failed)
        done = [d for d in deliveries if d.event_id not in left_events and d.event_id not in failed]
        duration_ms = (time.perf_counter() - clock) * 1000 / len(deliveries)
        if done:
            record_success([(d, started_at, duration_ms) for d in done], context)
        outcomes = Counter(
            record_failure(sub, d, failed[d.event_id], started_at, clock, context)
            for d in deliveries
            if d.event_id in failed
        )
    logger.debug(  # each delivery has its own line (from record_success); this sums them up
        "outbox: batch of %d %s deliveries succeeded, %d left to run one by one",
        len(done),
        sub.name,
        len(deliveries) - len(done),
        extra={
            "delivery_ids": [d.id for d in done],
            "event_ids": [d.event_id for d in done],
            "subscriber": sub.name,
        },
    )
    # Only what happened, as one by one counts it: no zero entries.
    counts = +Counter(succeeded=len(done), skipped=len(delivery_ids) - len(deliveries)) + outcomes
    return counts, [d.id for d in deliveries if d.event_id in left_events]
