"""API serializers for what the subscribers produce, and for devices and preferences."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tasks_app.serializers import StrictSerializerMixin

from .models import Device, Notification, Preferences, ProgressSnapshot, StorySegment


class ProgressSnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProgressSnapshot
        fields = [
            "event_id",
            "percent",
            "tasks_done",
            "tasks_total",
            "goal_percent",
            "streak_days",
            "pace_per_week",
            "estimated_finish",
            "created_at",
        ]


class ProgressSerializer(serializers.Serializer):
    project = serializers.UUIDField()
    percent = serializers.DecimalField(max_digits=5, decimal_places=2)
    tasks_done = serializers.IntegerField()
    tasks_total = serializers.IntegerField()
    goal_percent = serializers.DecimalField(max_digits=5, decimal_places=2, allow_null=True)
    streak_days = serializers.IntegerField()
    pace_per_week = serializers.DecimalField(max_digits=8, decimal_places=2)
    estimated_finish = serializers.DateField(allow_null=True)
    history = ProgressSnapshotSerializer(many=True)


class StorySegmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = StorySegment
        fields = [
            "id",
            "kind",
            "subject_id",
            "title",
            "text",
            "media",
            "recalled",
            "writer",
            "metadata",
            "created_at",
        ]


class PushOutcomeSerializer(serializers.Serializer):
    device = serializers.UUIDField(source="device_id")
    platform = serializers.CharField(source="device.platform")
    status = serializers.CharField()
    at = serializers.DateTimeField(source="created_at")


class NotificationSerializer(serializers.ModelSerializer):
    pushes = PushOutcomeSerializer(source="receipts", many=True, read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "data", "read_at", "pushes", "created_at"]


class DeviceSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    # Uniqueness is handled by the view (re-registering a token takes it over), not a 400.
    token = serializers.CharField(max_length=4096)

    class Meta:
        model = Device
        fields = ["id", "token", "platform", "active", "created_at"]
        read_only_fields = ["id", "active", "created_at"]


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$",
        "example": "22:00",
        "nullable": True,
    }
)
class LocalTimeField(serializers.TimeField):
    """A wall-clock time in the user's time zone, "HH:MM": no UTC offset, unlike OpenAPI's `time` format."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M", input_formats=["%H:%M", "%H:%M:%S"], **kwargs)


class PreferencesSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    quiet_hours_start = LocalTimeField(allow_null=True, required=False)
    quiet_hours_end = LocalTimeField(allow_null=True, required=False)

    class Meta:
        model = Preferences
        fields = ["time_zone", "push_enabled", "quiet_hours_start", "quiet_hours_end"]

    def validate_time_zone(self, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(
                "Unknown time zone; use an IANA name like Europe/Paris."
            ) from None
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start = attrs.get("quiet_hours_start", getattr(self.instance, "quiet_hours_start", None))
        end = attrs.get("quiet_hours_end", getattr(self.instance, "quiet_hours_end", None))
        if (start is None) != (end is None):
            raise serializers.ValidationError("Set both quiet_hours_start and quiet_hours_end, or neither.")
        return attrs


class MemorySearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(max_length=1000, trim_whitespace=True, help_text="What to look for, in words.")
    k = serializers.IntegerField(min_value=1, max_value=50, default=5, help_text="How many results, 1 to 50.")


class MemoryHitSerializer(serializers.Serializer):
    task = serializers.UUIDField()
    title = serializers.CharField()
    score = serializers.FloatField(help_text="Cosine similarity; 1 is identical.")


class MemorySearchSerializer(serializers.Serializer):
    results = MemoryHitSerializer(many=True)
