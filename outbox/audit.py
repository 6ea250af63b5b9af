"""The audit: checks that the outbox kept its promises, and prints what it found.

The outbox checks its own invariants (every dispatched event has one delivery per
subscriber of its type, nothing is stuck past its lease) and lists dead deliveries. A
dead delivery fails the audit too: it is an event some subscriber never handled, and it
waits for an operator (`outbox retry`). Infrastructure faults never make one, so after
a restart or a chaos run any dead delivery is a real finding.
Other apps register checks of their own with `register_check`, so the domain can
say "every completed task has its event" and each subscriber "every delivery that
succeeded left its effect" without the outbox knowing about either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from . import conf, counts, registry
from .eventlog.audit import every_event_is_logged
from .models import Delivery, OutboxEvent

# A check yields one line per violation; an empty check passed.
Check = Callable[[], Iterator[str]]

_checks: dict[str, Check] = {}


def register_check(name: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        _checks[name] = check
        return check

    return register


@dataclass
class AuditReport:
    checked: list[str] = field(default_factory=list)
    violations: dict[str, list[str]] = field(default_factory=dict)
    dead: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def promises_kept(self) -> bool:
        """No broken promise; dead deliveries, refused by their handlers, are allowed."""
        return not self.violations


VIOLATION_LIMIT = 50


def run() -> AuditReport:
    report = AuditReport()
    for name, check in {**_outbox_checks(), **_checks}.items():
        report.checked.append(name)
        found = []
        for line in check():
            found.append(line)
            if len(found) >= VIOLATION_LIMIT:
                found.append("... (more not shown)")
                break
        if found:
            report.violations[name] = found
    report.dead = [
        f"delivery {d.id} ({d.subscriber}, event {d.event_id} {d.event.type}): {d.last_error}"
        for d in Delivery.objects.filter(status=Delivery.Status.DEAD)
        .select_related("event")
        .order_by("id")[:200]
    ]
    report.counts = {
        "events": OutboxEvent.objects.count(),
        "pending events": counts.pending_events().count,
        **{f"deliveries {status}": n for status, n in counts.deliveries_by_status().items()},
    }
    return report


def _outbox_checks() -> dict[str, Check]:
    return {
        "every dispatched event has one delivery per subscriber of its type": _deliveries_complete,
        "nothing is stuck past its lease": _nothing_stuck,
        "event log: every event is logged, unless what it is about was deleted": every_event_is_logged,
    }


def _deliveries_complete() -> Iterator[str]:
    expected = {s.name: s.events for s in registry.all_subscribers()}
    have: dict[int, set[str]] = {}
    for event_id, subscriber in Delivery.objects.values_list("event_id", "subscriber").iterator(
        chunk_size=5000
    ):
        have.setdefault(event_id, set()).add(subscriber)
    for event_id, event_type in (
        OutboxEvent.objects.filter(status=OutboxEvent.Status.DISPATCHED)
        .values_list("id", "type")
        .iterator(chunk_size=5000)
    ):
        wanted = {name for name, types in expected.items() if event_type in types}
        missing = wanted - have.get(event_id, set())
        if missing:
            yield f"event {event_id} ({event_type}) has no delivery for {', '.join(sorted(missing))}"


def _nothing_stuck() -> Iterator[str]:
    now = timezone.now()
    lease = timedelta(seconds=conf.get("LEASE_SECONDS"))
    # A relay runs every second: an event pending for a whole lease is stuck.
    for event_id, created in OutboxEvent.objects.filter(
        status=OutboxEvent.Status.PENDING, created_at__lt=now - lease
    ).values_list("id", "created_at"):
        yield f"event {event_id} pending since {created.isoformat()}"
    # The sweeper re-publishes after one lease; two mean it is not working.
    for delivery_id, subscriber, since in Delivery.objects.filter(
        status=Delivery.Status.DISPATCHED, dispatched_at__lt=now - 2 * lease
    ).values_list("id", "subscriber", "dispatched_at"):
        yield f"delivery {delivery_id} ({subscriber}) dispatched since {since.isoformat()} and not finished"
    for delivery_id, subscriber, due in Delivery.objects.filter(
        status=Delivery.Status.PENDING, next_attempt_at__lt=now - lease
    ).values_list("id", "subscriber", "next_attempt_at"):
        yield f"delivery {delivery_id} ({subscriber}) retry was due at {due.isoformat()} and never ran"
