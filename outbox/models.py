"""The outbox tables: one event per domain change, one delivery per subscriber, one attempt per try."""

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .eventlog.models import EventLog  # noqa: F401 - the event log's model, found by Django here


class OutboxEvent(models.Model):
    """A domain event, written in the same transaction as the change it describes."""

    class Status(models.TextChoices):
        PENDING = "pending"  # written, not yet fanned out by the relay
        DISPATCHED = "dispatched"  # its deliveries exist and were handed to Celery

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=100)
    version = models.PositiveSmallIntegerField(default=1)
    aggregate_type = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=64)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # The W3C trace context (traceparent, tracestate) of the span that published the event:
    # the relay and every delivery record their spans in that trace (outbox/telemetry.py).
    # Empty when nothing was being traced.
    trace_context = models.JSONField(default=dict, blank=True)
    # Whose event this is (the payload's OWNER_KEY, `user_id` by default): the relay and the
    # workers serve owners in turns (outbox/fairness.py). Empty when the payload names none.
    owner_key = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The relay's scan: tiny however large the table grows, since it only
            # holds the events still waiting.
            models.Index(fields=["id"], name="outbox_event_pending", condition=Q(status="pending")),
            # The fair relay's: each owner's oldest pending events (outbox/fairness.py).
            models.Index(
                fields=["owner_key", "id"],
                name="outbox_event_pending_owner",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["aggregate_type", "aggregate_id"], name="outbox_event_aggregate"),
            models.Index(fields=["type", "created_at"], name="outbox_event_type_created"),
            models.Index(
                fields=["dispatched_at"],
                name="outbox_event_dispatched",
                condition=Q(status="dispatched"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk} ({self.aggregate_type} {self.aggregate_id})"


class Delivery(models.Model):
    """One event handed to one subscriber: the unit that is retried, dead-lettered and audited."""

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for its retry time (next_attempt_at)
        DISPATCHED = "dispatched"  # a Celery message for it was (or is about to be) published
        SUCCEEDED = "succeeded"
        DEAD = "dead"  # permanent error or retries exhausted; waits for an operator

    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    subscriber = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DISPATCHED)
    attempts = models.PositiveIntegerField(default=0)
    # Of those, the ones the database or broker cut short: they do not use up the retries.
    infrastructure_faults = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    owner_key = models.CharField(max_length=64, blank=True, default="")  # the event's, copied
    # Sent to the subscriber's express queue (outbox/express.py): a light owner's delivery
    # during a burst. The express worker takes these; any worker of the subscriber may.
    express = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["event", "subscriber"], name="outbox_delivery_once")]
        indexes = [
            # The sweeper's two scans, each over a partial index of only the rows it wants.
            models.Index(
                fields=["next_attempt_at"],
                name="outbox_delivery_due",
                condition=Q(status="pending"),
            ),
            models.Index(
                fields=["dispatched_at"],
                name="outbox_delivery_leased",
                condition=Q(status="dispatched"),
            ),
            models.Index(fields=["subscriber", "status"], name="outbox_delivery_sub_status"),
            # A fair worker's scan: per subscriber, each owner's oldest waiting deliveries.
            models.Index(
                fields=["subscriber", "owner_key", "id"],
                name="outbox_delivery_waiting",
                condition=Q(status="dispatched"),
            ),
            # A worker's oldest waiting deliveries (fairness's deal, the waiting ones a message takes):
            # without it the planner walked the primary key past every finished delivery ahead of
            # the oldest waiting one (14 ms with 10,000 finished; a burst leaves tens of thousands).
            models.Index(
                fields=["subscriber", "id"],
                name="outbox_delivery_oldest",
                condition=Q(status="dispatched"),
            ),
            # The express worker's: the express deliveries still waiting.
            models.Index(
                fields=["subscriber", "id"],
                name="outbox_delivery_express",
                condition=Q(("status", "dispatched"), ("express", True)),  # as migration 0006 spells it
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subscriber} <- event #{self.event_id} [{self.status}]"


class DeliveryAttempt(models.Model):
    """One try of one delivery, with its outcome: the history an operator reads in the admin."""

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded"
        RETRY = "retry"  # transient error; another attempt is scheduled
        DEAD = "dead"  # permanent error, or the last retry failed

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery_id", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery #{self.delivery_id}: {self.outcome}"
