"""Notifications for a batch of events at once: a number of queries that does not grow with the
batch, and one call to the push backend (which splits it into FCM's 500-message `send_each`s).

The same rows and pushes as the one-by-one handler (`handler.notify`), and the same guarantee of
one push per device and notification: receipts already there are skipped, new ones are written
with the batch. The subscriber is not atomic, so what this writes before raising (the
notifications, the receipts of pushes that went out) stays; the framework then runs the whole
batch one by one, and `notify` finds that work done.

What needs a delivery of its own is left to `notify`, run one by one after the batch commits:
- a user in quiet hours: `notify` defers the delivery (`Deferred`) until they end;
- a device whose push must be retried: `notify` pushes again only to devices without a receipt
  and raises `TransientError`, so the attempt is recorded and retried with the policy;
- a payload this batch cannot read: `notify` fails it alone, permanently, with its reason.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Case, Model, Q, Value, When
from django.utils import timezone

from outbox.api import Event, PermanentError

from ..locks import hold_against_delete
from ..models import Device, Notification, Preferences, PushReceipt
from .content import (
    FORGET,
    PAYLOAD_VERSION,
    SUBJECT,
    describe,
    notification_id,
    push_message,
    quiet_hours_end,
)
from .push import Outcome, get_backend

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Completion:
    event: Event
    owner_id: int
    subject_id: uuid.UUID | None  # None: the payload names none, so there is nothing to notify


@dataclass(frozen=True)
class _Forget:
    event: Event
    owner_id: int
    key: str
    subject_id: str


def notify_many(events: Sequence[Event]) -> set[int]:
    """Notify and push for `events`; returns the ids of the events left to `notify`, one by one."""
    completions, forgets, left = _read(events)
    # A savepoint: a query that fails rolls back to here, and the framework re-runs the batch
    # one by one in a transaction that is still usable. Its locks last until the batch commits.
    with transaction.atomic():
        # Forgotten first: a completion whose subject was deleted since then finds it gone.
        forgotten = _forget_all(forgets)
        notifications, mismatched = _ensure_all(completions)
        to_push, quiet = _to_push(notifications)
        pairs = _unpushed(to_push)
    retry, pushed = _push(pairs, to_push)
    left |= mismatched | quiet | retry
    logger.info(
        "notifications: batch of %d events: %d notifications, %d pushes, %d forgotten, %d left one by one "
        "(events %s)",
        len(events),
        len(notifications),
        pushed,
        forgotten,
        len(left),
        [e.id for e in events][:20],
    )
    return left


def _read(events: Sequence[Event]) -> tuple[list[_Completion], list[_Forget], set[int]]:
    """The events sorted by what they ask for; those this batch cannot read go to `notify`,
    which fails each alone with the reason, rather than break the batch's queries."""
    completions: list[_Completion] = []
    forgets: list[_Forget] = []
    left: set[int] = set()
    for event in events:
        try:
            event.require("user_id", version=PAYLOAD_VERSION)
            owner_id = int(str(event.payload["user_id"]))
            if event.type in FORGET:
                key = FORGET[event.type]
                event.require(key, version=PAYLOAD_VERSION)
                forgets.append(_Forget(event, owner_id, key, str(event.payload[key])))
            else:
                raw = event.payload.get(SUBJECT[event.type][1])
                subject_id = uuid.UUID(str(raw)) if raw else None
                completions.append(_Completion(event, owner_id, subject_id))
        except (PermanentError, KeyError, ValueError, TypeError):
            left.add(event.id)
    return completions, forgets, left


def _forget_all(forgets: list[_Forget]) -> int:
    """Delete the notifications about the deleted subjects (receipts cascade) in one statement."""
    if not forgets:
        return 0
    about = Q()
    for f in forgets:
        about |= Q(owner_id=f.owner_id, data__contains={f.key: f.subject_id})
    _, by_model = Notification.objects.filter(about).delete()
    removed = by_model.get(Notification._meta.label, 0)
    logger.info(
        "notifications: %d subjects forgotten: %d notifications removed (events %s)",
        len(forgets),
        removed,
        [f.event.id for f in forgets][:20],
    )
    return removed


def _ensure_all(completions: list[_Completion]) -> tuple[list[Notification], set[int]]:
    """The batch's notifications, made once each (keyed by the event) and locked.

    Returns them, and the events left to `notify` (a payload whose user is not the subject's
    owner: not a state the batch makes a row for). The subjects are held against deletion until
    the batch commits, as `ensure_notification` holds each.
    """
    if not completions:
        return [], set()
    wanted: dict[type[Model], set[uuid.UUID]] = defaultdict(set)
    for c in completions:
        if c.subject_id is not None:
            wanted[SUBJECT[c.event.type][0]].add(c.subject_id)
    subjects: dict[tuple[type[Model], uuid.UUID], Model] = {}
    for model in sorted(wanted, key=lambda m: m._meta.label):  # one order: no lock cycles
        hold_against_delete(model, sorted(wanted[model]))
        for subject in model.objects.filter(pk__in=wanted[model]).only("id", "owner_id", "title"):
            subjects[model, subject.pk] = subject
    new: list[Notification] = []
    mismatched: set[int] = set()
    for c in completions:
        subject = subjects.get((SUBJECT[c.event.type][0], c.subject_id))
        if subject is None:
            # As one by one: no notification (one made before the subject went is found below).
            continue
        if subject.owner_id != c.owner_id:  # type: ignore[attr-defined]
            mismatched.add(c.event.id)
            continue
        title, body, data = describe(c.event.type, subject)  # type: ignore[arg-type]
        new.append(
            Notification(
                id=notification_id(c.event.id),
                event_id=c.event.id,
                owner_id=c.owner_id,
                kind=c.event.type,
                title=title,
                body=body,
                data=data,
            )
        )
    # In event order, as the lock below: two batches inserting the same events wait, never cycle.
    Notification.objects.bulk_create(sorted(new, key=lambda n: n.event_id), ignore_conflicts=True)
    # Locked, as one by one: a replay never pushes the same notification at the same time.
    notifications = list(
        Notification.objects.select_for_update()
        .filter(event_id__in=[c.event.id for c in completions if c.event.id not in mismatched])
        .order_by("event_id")
    )
    if len(notifications) < len(completions) - len(mismatched):
        logger.info(
            "notifications: the subjects of %d events are gone; nothing to notify for them",
            len(completions) - len(mismatched) - len(notifications),
        )
    return notifications, mismatched


def _to_push(notifications: list[Notification]) -> tuple[list[Notification], set[int]]:
    """The notifications to push now, and the events of those whose owner is in quiet hours."""
    if not notifications:
        return [], set()
    owners = {n.owner_id for n in notifications}
    prefs = {p.user_id: p for p in Preferences.objects.filter(user_id__in=owners)}
    now = timezone.now()
    to_push: list[Notification] = []
    quiet: set[int] = set()
    for n in notifications:
        p = prefs.get(n.owner_id)
        if p is not None and not p.push_enabled:
            continue
        if p is not None and quiet_hours_end(p, now) is not None:
            quiet.add(n.event_id)  # `notify` records when the push is due, and defers it
            continue
        to_push.append(n)
    return to_push, quiet


def _unpushed(notifications: list[Notification]) -> list[tuple[Notification, Device]]:
    """Each notification with each of its owner's active devices that has no receipt for it."""
    if not notifications:
        return []
    devices = _active_devices({n.owner_id for n in notifications})
    received = set(
        PushReceipt.objects.filter(notification__in=notifications).values_list("notification_id", "device_id")
    )
    return [
        (n, d) for n in notifications for d in devices.get(n.owner_id, ()) if (n.pk, d.pk) not in received
    ]


def _push(
    pairs: list[tuple[Notification, Device]], notifications: list[Notification]
) -> tuple[set[int], int]:
    """One push call for all the pairs, then their receipts; returns the events with a device to
    retry, and how many receipts were written."""
    if not notifications:
        return set(), 0
    results = get_backend().send([push_message(n, d.token) for n, d in pairs]) if pairs else []
    receipts: list[PushReceipt] = []
    invalid: dict[uuid.UUID, str] = {}
    retry: set[int] = set()
    for (notification, device), result in zip(pairs, results, strict=True):
        if result.outcome == Outcome.RETRY:
            retry.add(notification.event_id)
            continue
        if result.outcome == Outcome.INVALID_TOKEN:
            invalid[device.pk] = result.error[:200]
        receipts.append(
            PushReceipt(
                notification=notification,
                device=device,
                status=str(result.outcome),
                provider_message_id=result.message_id,
                error=result.error,
            )
        )
    # A savepoint: should a write fail, the framework re-runs the batch one by one and finds the
    # notifications made; the pushes without receipts go again, under the same collapse ids.
    with transaction.atomic():
        PushReceipt.objects.bulk_create(receipts, ignore_conflicts=True)
        if invalid:
            _deactivate(invalid)
        due = [n.pk for n in notifications if n.push_due_at is not None and n.event_id not in retry]
        if due:
            Notification.objects.filter(pk__in=due).update(push_due_at=None)
    if retry:
        logger.info("notifications: events %s have devices to retry, one by one", sorted(retry)[:20])
    return retry, len(receipts)


def _active_devices(owner_ids: Collection[int]) -> dict[int, list[Device]]:
    """The owners' active devices, held against deletion until the batch commits: a device deleted
    meanwhile would fail the commit of its receipt (a deferred foreign key), and so the batch's."""
    table = Device._meta.db_table
    devices: dict[int, list[Device]] = defaultdict(list)
    for device in Device.objects.raw(
        f"SELECT * FROM {table} WHERE owner_id = ANY(%s::bigint[]) AND active ORDER BY id FOR KEY SHARE",  # noqa: S608
        [sorted(owner_ids)],
    ):
        devices[device.owner_id].append(device)
    return devices


def _deactivate(invalid: dict[uuid.UUID, str]) -> None:
    """Deactivate the devices whose token the provider refused, each with its own reason, at once."""
    reason = Case(*(When(pk=pk, then=Value(error)) for pk, error in invalid.items()))
    Device.objects.filter(pk__in=invalid).update(active=False, deactivated_reason=reason)
    for pk, error in invalid.items():
        logger.info("notifications: device %s deactivated: %s", pk, error)
