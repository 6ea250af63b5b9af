"""The event log's table: one row per outbox event, written once and never changed."""

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class EventLog(models.Model):
    """One committed outbox event, as it was written.

    The table is partitioned by month on `committed_at` (migration 0004 creates it with RunSQL).
    PostgreSQL's key is (event_id, committed_at), since a unique key on a partitioned table
    must include the partition key; Django's admin does not take composite keys yet, so the model
    names `event_id` alone as its primary key. That is still true of the data: `committed_at` is
    the event's `created_at`, which never changes, so an event has one row whatever copies it.
    """

    event_id = models.BigIntegerField(primary_key=True, help_text="The outbox event's id.")
    committed_at = models.DateTimeField(help_text="When the event was written (its created_at).")
    logged_at = models.DateTimeField(default=timezone.now, help_text="When this row was written.")
    type = models.CharField(max_length=100)
    version = models.PositiveSmallIntegerField()
    aggregate_type = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=64)
    # A plain integer, not a foreign key: the account delete removes these rows explicitly, and
    # a key would make every insert check (and share-lock) the user row.
    owner_id = models.BigIntegerField(null=True, blank=True, help_text="The payload's user_id.")
    payload = models.JSONField(encoder=DjangoJSONEncoder)

    class Meta:
        db_table = "outbox_eventlog"
        ordering = ["-committed_at", "-event_id"]
        verbose_name = "event log entry"
        verbose_name_plural = "event log"
        # Created by the migration's SQL on the partitioned table; named here so that the
        # model's state matches the database.
        indexes = [
            # The feed's order exactly (ties by event id), so a page is read off the index of
            # each partition, merged, with no sort of the owner's whole history.
            models.Index(fields=["owner_id", "-committed_at", "-event_id"], name="eventlog_owner_time"),
            models.Index(fields=["committed_at"], name="eventlog_committed"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.event_id} ({self.aggregate_type} {self.aggregate_id})"
