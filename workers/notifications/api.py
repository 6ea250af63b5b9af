"""The notifications API: the in-app inbox, the caller's push devices and their preferences
(time zone, push switch, quiet hours).

Registering a device answers alike whether its token was new, already the caller's, or another
account's (which loses it): the answer tells nobody whether a token is known. The threat model
is in the README's Security section.
"""

from __future__ import annotations

import logging
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from tasks_app.serializers import StrictSerializerMixin

from ..models import Device, Notification, Preferences

logger = logging.getLogger(__name__)
MOVED_REASON = "Its token was registered on another account."


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
    # Uniqueness is handled by register_device (a known token moves to the caller), not a 400.
    token = serializers.CharField(
        help_text="The push provider's token: at most SELFOS_MAX_DEVICE_TOKEN_BYTES (4,096 by default) "
        "bytes in UTF-8."
    )

    class Meta:
        model = Device
        fields = ["id", "token", "platform", "active", "created_at"]
        read_only_fields = ["id", "active", "created_at"]

    def validate_token(self, value: str) -> str:
        limit = settings.SELFOS_MAX_DEVICE_TOKEN_BYTES
        # Bytes, not characters: what the provider and the database hold. "surrogatepass": a lone
        # surrogate is refused by the field's own validator, not with an exception here.
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            raise serializers.ValidationError(
                f"A device token is at most {limit} bytes in UTF-8.", code="max_length"
            )
        return value


def register_device(owner: AbstractBaseUser, token: str, platform: str) -> Device:
    """Make `token` an active device of `owner` and of nobody else, within the cap on devices.

    The caller's own row for the token, if any, is reused (re-registering is not a new device);
    another account's active row for it is deactivated, never handed over, so that account keeps
    its history and sees the device go. Raises a ValidationError, having changed nothing, when the
    caller already has SELFOS_MAX_DEVICES_PER_USER other active devices.
    """
    token_hash = Device.hash_token(token)
    try:
        with transaction.atomic():
            return _register_device(owner, token, token_hash, platform)
    except IntegrityError:
        # Another account inserted the same new token at the same moment and committed first:
        # now its row is there to deactivate.
        logger.info("device registration of user %s raced another; retrying", owner.pk)
        with transaction.atomic():
            return _register_device(owner, token, token_hash, platform)


def _register_device(owner: AbstractBaseUser, token: str, token_hash: str, platform: str) -> Device:
    # The user's row, locked: their registrations run one at a time, so two cannot both take the
    # last place. NO KEY: rows that merely point at the user (their tasks...) are not held up.
    if not get_user_model().objects.select_for_update(no_key=True).filter(pk=owner.pk).values_list("pk"):
        raise AuthenticationFailed("The account is gone.")  # deleted while this request ran
    mine = Device.objects.filter(owner=owner, token_hash=token_hash).first()
    if mine is None or not mine.active:
        limit = settings.SELFOS_MAX_DEVICES_PER_USER
        if Device.objects.filter(owner=owner, active=True).count() >= limit:
            # Keyed like the serializers' own errors (this one is raised outside of them).
            message = (
                f"An account has at most {limit} active devices; remove one (DELETE /api/devices/{{id}}/) "
                "first."
            )
            raise serializers.ValidationError(
                {api_settings.NON_FIELD_ERRORS_KEY: [message]}, code="device_limit"
            )
    theirs = (
        Device.objects.select_for_update().filter(token_hash=token_hash, active=True).exclude(owner=owner)
    )
    moved = {device.pk: device.owner_id for device in theirs}
    if moved:
        Device.objects.filter(pk__in=moved).update(active=False, deactivated_reason=MOVED_REASON)
    if mine is None:
        mine = Device.objects.create(owner=owner, token=token, platform=platform)
    else:
        mine.platform, mine.active, mine.deactivated_reason = platform, True, ""
        mine.save(update_fields=["platform", "active", "deactivated_reason"])
    for device_id, previous_owner in moved.items():
        logger.info(
            "device %s of user %s deactivated: its token moved to device %s of user %s",
            device_id,
            previous_owner,
            mine.pk,
            owner.pk,
        )
    return mine


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
    """Push tokens. Registering a known token (the app reinstalled, a new login on the same phone)
    makes it the caller's; another account that had it sees its device deactivated."""

    queryset = Device.objects.none()  # the model, for drf-spectacular (it has no request user)
    serializer_class = DeviceSerializer

    def get_queryset(self) -> QuerySet[Device]:
        return Device.objects.filter(owner=self.request.user)

    @extend_schema(
        description="Register a push token. The answer is a 201 with the caller's device whether the "
        "token was new, already the caller's (the same device again), or another account's; at most "
        "SELFOS_MAX_DEVICES_PER_USER (10 by default) active devices an account.",
        responses={201: DeviceSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = register_device(
            request.user, serializer.validated_data["token"], serializer.validated_data["platform"]
        )
        # Always 201: a 200 for a known token would tell the caller it was known.
        return Response(self.get_serializer(device).data, status=status.HTTP_201_CREATED)


class PreferencesView(generics.RetrieveUpdateAPIView):
    """The caller's time zone, push switch and quiet hours."""

    serializer_class = PreferencesSerializer

    def get_object(self) -> Preferences:
        prefs, _ = Preferences.objects.get_or_create(user=self.request.user)
        return prefs
