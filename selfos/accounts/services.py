"""Deleting an account and everything derived from it, in one database transaction."""

from __future__ import annotations

import logging

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from outbox.eventlog.writer import forget_owner as forget_logged_events
from outbox.models import OutboxEvent
from outbox.retention import delete_events
from tasks_app.models import Goal, MediaAttachment, Project, Task
from workers.memory import forget
from workers.models import Device, Notification, ProgressSnapshot, PushReceipt, StorySegment

logger = logging.getLogger(__name__)


def purge_outbox(user_id: int) -> int:
    """Delete every outbox event about the user (payloads carry `user_id`), with its deliveries
    and their attempts, whatever their status.

    The events are locked first: the relay claims with SKIP LOCKED, so it passes them over, and
    no delivery can be added to one meanwhile. A delivery a worker is running is locked by it:
    the delete waits for that run to commit. A Celery message that still names a deleted delivery
    finds nothing to claim and is skipped; the sweeper only looks at delivery rows.
    """
    events = OutboxEvent.objects.filter(payload__user_id=user_id)
    ids = list(events.select_for_update().values_list("id", flat=True))
    if not ids:
        return 0
    return delete_events(ids)


@transaction.atomic
def delete_account(user: AbstractBaseUser) -> dict[str, int]:
    """Delete the user and every row derived from them; the vector store's tenant after commit.

    Returns the number of rows deleted per model label (for the log).
    """
    user_id = user.pk
    username = user.get_username()
    counts: dict[str, int] = {}

    def tally(deleted: dict[str, int]) -> None:
        for label, n in deleted.items():
            counts[label] = counts.get(label, 0) + n

    # First the outbox, before the user row is locked: this waits for the user's in-flight
    # deliveries, whose handlers may still add rows that reference the user.
    counts["outbox.OutboxEvent (before)"] = purge_outbox(user_id)
    # From here no other transaction can commit a new row that references the user: its
    # foreign-key check needs a share lock on the user row.
    list(get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk", flat=True))
    # Read before the tasks go: memory forgets the vectors it may still keep of them (in the cache).
    task_ids = [str(pk) for pk in Task.objects.filter(owner_id=user_id).values_list("pk", flat=True)]
    # The derived rows explicitly, leaves first: each is one DELETE, not a load into memory.
    for queryset in (
        PushReceipt.objects.filter(notification__owner_id=user_id),
        PushReceipt.objects.filter(device__owner_id=user_id),
        Notification.objects.filter(owner_id=user_id),
        Device.objects.filter(owner_id=user_id),
        StorySegment.objects.filter(owner_id=user_id),
        ProgressSnapshot.objects.filter(project__owner_id=user_id),
        MediaAttachment.objects.filter(task__owner_id=user_id),
        Task.objects.filter(owner_id=user_id),
        Project.objects.filter(owner_id=user_id),
        Goal.objects.filter(owner_id=user_id),
    ):
        tally(queryset.delete()[1])
    counts["workers.MemoryEntry"] = forget.forget_owner(user_id, task_ids)  # and the store tenant, on commit
    # Failed and successful logins are kept by username (django-axes has no foreign key).
    for model in (AccessAttempt, AccessLog, AccessFailureLog):
        tally(model.objects.filter(username=username).delete()[1])
    # What is left cascades from the user row: the token, preferences, admin log entries,
    # group and permission links.
    tally(user.delete()[1])
    # Events committed meanwhile by the transactions the deletes above waited for (a completion
    # racing this delete, a progress milestone published by a handler that was running).
    counts["outbox.OutboxEvent (after)"] = purge_outbox(user_id)
    # The user's history in the event log: last, so it takes the events the purge above saw too
    # (each was logged in the transaction that wrote it).
    counts["outbox.EventLog"] = forget_logged_events(user_id)
    logger.info("account of user %s deleted: %s", user_id, {k: v for k, v in sorted(counts.items()) if v})
    return counts
