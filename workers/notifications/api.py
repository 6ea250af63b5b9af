"""The notifications API: the in-app inbox, the caller's push devices and their preferences
(time zone, push switch, quiet hours)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from tasks_app.serializers import StrictSerializerMixin

from ..models import Device, Notification, Preferences


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


class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The in-app inbox: unread first, then newest first."""

    queryset = Notification.objects.none()  # the model, for drf-spectacular (it has no request user)
    serializer_class = NotificationSerializer

    def get_queryset(self) -> QuerySet[Notification]:
        return (
            Notification.objects.filter(owner=self.request.user)
            .prefetch_related("receipts__device")
            .order_by(F("read_at").desc(nulls_first=True), "-created_at")
        )

    @extend_schema(request=None, responses={200: NotificationSerializer})
    @action(detail=True, methods=["post"])
    def read(self, request: Request, pk: str | None = None) -> Response:
        notification = self.get_object()
        if notification.read_at is None:
            notification.read_at = timezone.now()
            notification.save(update_fields=["read_at"])
        return Response(self.get_serializer(notification).data)


class DeviceViewSet(
    mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Push tokens. Registering a known token (the app reinstalled, another account) takes it over."""

    queryset = Device.objects.none()  # the model, for drf-spectacular (it has no request user)
    serializer_class = DeviceSerializer

    def get_queryset(self) -> QuerySet[Device]:
        return Device.objects.filter(owner=self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            device, created = Device.objects.update_or_create(
                token=serializer.validated_data["token"],
                defaults={
                    "owner": request.user,
                    "platform": serializer.validated_data["platform"],
                    "active": True,
                    "deactivated_reason": "",
                },
            )
        return Response(
            self.get_serializer(device).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class PreferencesView(generics.RetrieveUpdateAPIView):
    """The caller's time zone, push switch and quiet hours."""

    serializer_class = PreferencesSerializer

    def get_object(self) -> Preferences:
        prefs, _ = Preferences.objects.get_or_create(user=self.request.user)
        return prefs
