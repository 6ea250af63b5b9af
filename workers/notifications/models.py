"""Notifications' models: the user's preferences (time zone, push, quiet hours), their push
devices, the in-app notifications and a receipt per push and device."""

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Func, Q, Value


class Preferences(models.Model):
    """A user's time zone (streaks count days in it) and push settings."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="selfos_prefs"
    )
    time_zone = models.CharField(max_length=64, default="UTC")
    push_enabled = models.BooleanField(default=True)
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"preferences of user {self.user_id}"


def _token_sha256() -> Func:
    """SHA-256 of the token's UTF-8 bytes, in hex, as PostgreSQL computes it for `token_hash`.

    PostgreSQL has no immutable text-to-bytes function (convert_to() is only stable, and a
    generated column needs immutable ones), but decode(..., 'escape') is immutable and takes a
    UTF-8 database's text byte for byte once each backslash is doubled.
    """
    as_bytes = Func(
        Func(F("token"), Value("\\"), Value("\\\\"), function="REPLACE"),
        Value("escape"),
        function="DECODE",
        output_field=models.BinaryField(),
    )
    return Func(
        Func(as_bytes, function="SHA256", output_field=models.BinaryField()),
        Value("hex"),
        function="ENCODE",
        output_field=models.CharField(),
    )


class Device(models.Model):
    """A push token of one of the user's app installs.

    A token is active on one account at most: registering it on another deactivates it on the
    first. Each account keeps one row per token, active or not (its push receipts stay with it).
    """

    class Platform(models.TextChoices):
        ANDROID = "android"
        IOS = "ios"
        WEB = "web"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Any length here; the API caps it (SELFOS_MAX_DEVICE_TOKEN_BYTES). The unique indexes are
    # on the token's hash: a btree entry holds at most ~2,700 bytes, so a long token indexed as
    # it is would fail its insert.
    token = models.TextField()
    token_hash = models.GeneratedField(
        expression=_token_sha256(),
        output_field=models.CharField(max_length=64),
        db_persist=True,
        help_text="SHA-256 of the token (hex), computed by the database: what uniqueness is about.",
    )
    platform = models.CharField(max_length=8, choices=Platform.choices)
    active = models.BooleanField(default=True)
    deactivated_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner"], name="device_active_owner", condition=Q(active=True))]
        constraints = [
            models.UniqueConstraint(
                fields=["token_hash"], condition=Q(active=True), name="device_token_active_once"
            ),
            models.UniqueConstraint(fields=["owner", "token_hash"], name="device_token_once_per_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.platform} device of user {self.owner_id}"

    @staticmethod
    def hash_token(token: str) -> str:
        """What the database computes into `token_hash`, for looking a token up by its index."""
        return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Notification(models.Model):
    """An in-app notification; its push, if any, goes out once per device."""

    class Kind(models.TextChoices):
        TASK_COMPLETED = "task.completed"
        PROJECT_COMPLETED = "project.completed"
        GOAL_REACHED = "goal.reached"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    event_id = models.BigIntegerField(unique=True, help_text="One notification per outbox event.")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    title = models.CharField(max_length=200)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    push_due_at = models.DateTimeField(
        null=True, blank=True, help_text="Set while a push waits for quiet hours to end."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "read_at", "-created_at"]),
            models.Index(
                fields=["push_due_at"], name="notification_push_due", condition=Q(push_due_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return self.title


class PushReceipt(models.Model):
    """The outcome of pushing one notification to one device: what makes a retry skip it."""

    class Status(models.TextChoices):
        SENT = "sent"
        INVALID = "invalid"  # the token is dead; the device was deactivated
        FAILED = "failed"  # a permanent error for this message on this device

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="receipts")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="receipts")
    status = models.CharField(max_length=8, choices=Status.choices)
    provider_message_id = models.CharField(max_length=300, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["notification", "device"], name="push_once_per_device")
        ]

    def __str__(self) -> str:
        return f"{self.notification_id} -> {self.device_id}: {self.status}"
