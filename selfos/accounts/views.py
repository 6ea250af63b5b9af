"""The account endpoints: log out, export everything, delete everything. Thin: validate, call a
service, answer."""

from __future__ import annotations

import logging

from django.contrib.auth import logout as session_logout
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from tasks_app.serializers import StrictSerializerMixin

from . import export, services

logger = logging.getLogger(__name__)


class PasswordSerializer(StrictSerializerMixin, serializers.Serializer):
    password = serializers.CharField(
        write_only=True, max_length=128, trim_whitespace=False, style={"input_type": "password"}
    )

    def validate_password(self, value: str) -> str:
        if not self.context["user"].check_password(value):
            raise serializers.ValidationError("Incorrect password.")
        return value


class PasswordErrorSerializer(serializers.Serializer):
    password = serializers.ListField(child=serializers.CharField(), required=False)


class ExportProfileSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    date_joined = serializers.DateTimeField(allow_null=True)


class ExportSerializer(serializers.Serializer):
    """The export document: the profile, the preferences, then one array per kind of data."""

    format = serializers.CharField(help_text=f'Always "{export.FORMAT}".')
    version = serializers.IntegerField(help_text="The document's format version.")
    exported_at = serializers.DateTimeField()
    profile = ExportProfileSerializer()
    preferences = serializers.DictField(allow_null=True, help_text="Time zone, push and quiet hours.")
    goals = serializers.ListField(child=serializers.DictField())
    projects = serializers.ListField(child=serializers.DictField())
    tasks = serializers.ListField(child=serializers.DictField(), help_text="Each with its `media`.")
    progress_snapshots = serializers.ListField(child=serializers.DictField())
    story_segments = serializers.ListField(child=serializers.DictField())
    notifications = serializers.ListField(child=serializers.DictField(), help_text="Each with its `pushes`.")
    devices = serializers.ListField(
        child=serializers.DictField(), help_text="Push tokens redacted but for their last 6 characters."
    )
    memory_entries = serializers.ListField(
        child=serializers.DictField(), help_text="Semantic memory: task id, title and text, no vectors."
    )


class LogoutView(APIView):
    """Revoke the caller's API token: it answers 401 from now on. Log in again for a new one."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        Token.objects.filter(user=request.user).delete()
        if isinstance(request.successful_authenticator, SessionAuthentication):
            session_logout(request._request)  # the browsable API's session ends too
        logger.info("user %s logged out; token revoked", request.user.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """Delete the caller's account and everything derived from it."""

    # A stolen token must not make a password oracle: the login's tighter limit applies too.
    throttle_classes = [UserRateThrottle, ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(
        request=None,
        responses={
            204: OpenApiResponse(description="The account and all its data are gone."),
            400: OpenApiResponse(
                PasswordErrorSerializer, description="Password missing or wrong: nothing changed."
            ),
        },
        description=(
            'Send the password again in a JSON body: `{"password": "..."}`. Deletes the account '
            "and everything derived from it: goals, projects, tasks and media, progress snapshots, "
            "story segments, notifications and push receipts, devices, preferences, memories "
            "(pgvector rows, and the Weaviate tenant after commit), login records, the token, and "
            "the outbox events about the user. Irreversible; take GET /api/me/export/ first."
        ),
    )
    def delete(self, request: Request) -> Response:
        serializer = PasswordSerializer(data=request.data, context={"user": request.user})
        serializer.is_valid(raise_exception=True)
        services.delete_account(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ExportView(APIView):
    """All of the caller's data as one JSON document (GDPR Art. 20), streamed as a download."""

    @extend_schema(
        responses={
            (200, "application/json"): OpenApiResponse(
                ExportSerializer,
                description=(
                    "One JSON document, sent as an attachment and written as it is read: the profile "
                    "(username, date joined), preferences, goals, projects, tasks with their media, "
                    "progress snapshots, story segments, notifications with their pushes, devices "
                    "(tokens redacted) and memory entries (text, no vectors)."
                ),
            )
        }
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        response = StreamingHttpResponse(export.stream(request.user), content_type="application/json")
        day = timezone.now().strftime("%Y%m%d")
        response["Content-Disposition"] = f'attachment; filename="selfos-export-{request.user.pk}-{day}.json"'
        response["Cache-Control"] = "no-store"
        logger.info("user %s export started", request.user.pk)
        return response
