"""The domain's REST API: thin views that validate, call a service, and serialize."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models import Model, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from selfos.api import lockout_response

from . import services
from .models import Goal, MediaAttachment, Project, Task
from .serializers import (
    GoalSerializer,
    MediaAttachmentSerializer,
    ProjectSerializer,
    RegisterSerializer,
    TaskSerializer,
    TokenSerializer,
)

User = get_user_model()


class RegisterView(APIView):
    """Create an account and return its API token."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(request=RegisterSerializer, responses={201: TokenSerializer})
    def post(self, request: Request) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            user = User.objects.create_user(
                username=serializer.validated_data["username"],
                password=serializer.validated_data["password"],
            )
            token = Token.objects.create(user=user)
        return Response({"token": token.key}, status=status.HTTP_201_CREATED)


class TokenView(ObtainAuthToken):
    """Exchange a username and password for the account's API token."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(responses={200: TokenSerializer, 429: None})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError:
            # django-axes marks a locked-out login on the request it was given, which here is
            # DRF's wrapper, where its middleware does not look: answer the lockout ourselves.
            if getattr(request, "axes_locked_out", False):
                return lockout_response(request)
            raise
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        # A token login is a login: Django's signal updates last_login, and django-axes records
        # the address (where a known user is spared the per-username lockout) and resets the
        # pair's failures, as for the admin's session login.
        user_logged_in.send(sender=type(user), request=request._request, user=user)
        return Response({"token": token.key})


class OwnedViewSet(viewsets.ModelViewSet):
    """CRUD over the caller's own rows: another user's id is simply not found (404)."""

    model: type[Model]

    def get_queryset(self) -> QuerySet[Any]:
        return self.model.objects.filter(owner=self.request.user)

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.save(owner=self.request.user)


class GoalViewSet(OwnedViewSet):
    model = Goal
    queryset = Goal.objects.none()  # the model, for drf-spectacular (it has no request user)
    serializer_class = GoalSerializer

    def perform_destroy(self, instance: Goal) -> None:
        services.delete_goal(instance)


class ProjectViewSet(OwnedViewSet):
    model = Project
    queryset = Project.objects.none()  # the model, for drf-spectacular (it has no request user)
    serializer_class = ProjectSerializer

    def get_queryset(self) -> QuerySet[Project]:
        return super().get_queryset().select_related("goal")

    def perform_destroy(self, instance: Project) -> None:
        services.delete_project(instance)


class TaskViewSet(OwnedViewSet):
    model = Task
    queryset = Task.objects.none()  # the model, for drf-spectacular (it has no request user)
    serializer_class = TaskSerializer

    def get_queryset(self) -> QuerySet[Task]:
        return super().get_queryset().select_related("project").prefetch_related("media")

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        task: Task = serializer.instance
        new_status = serializer.validated_data.pop("status", None)
        # Reopening a completed task is an event (progress and memory follow it); any
        # other status change is a plain field write. "completed" stays with complete/.
        reopen = bool(new_status) and new_status != Task.Status.COMPLETED and task.is_completed
        with transaction.atomic():
            if reopen:
                serializer.save()
                services.reopen_task(task, new_status)
            elif new_status and new_status != Task.Status.COMPLETED:
                serializer.save(status=new_status)
            else:
                serializer.save()

    def perform_destroy(self, instance: Task) -> None:
        services.delete_task(instance)

    @extend_schema(request=None, responses={200: TaskSerializer})
    @action(detail=True, methods=["put", "post"])
    def complete(self, request: Request, pk: str | None = None) -> Response:
        """Complete the task. Idempotent: completing it again changes nothing and emits no event."""
        task = self.get_object()
        services.complete_task(task, by=request.user)
        return Response(self.get_serializer(task).data)

    @extend_schema(methods=["get"], responses={200: MediaAttachmentSerializer(many=True)})
    @extend_schema(
        methods=["post"], request=MediaAttachmentSerializer, responses={201: MediaAttachmentSerializer}
    )
    @action(detail=True, methods=["get", "post"], serializer_class=MediaAttachmentSerializer)
    def media(self, request: Request, pk: str | None = None) -> Response:
        """List the task's media (paginated), or attach one (kind, url, caption): at most
        SELFOS_MAX_MEDIA_PER_TASK (50 by default) a task; past that, a 400."""
        task = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(MediaAttachment.objects.filter(task=task))
            return self.get_paginated_response(MediaAttachmentSerializer(page, many=True).data)
        serializer = MediaAttachmentSerializer(
            data=request.data, context={**self.get_serializer_context(), "task": task}
        )
        # One transaction: validation counts the task's media under a lock on the task, held
        # until the new attachment is saved (the cap, SELFOS_MAX_MEDIA_PER_TASK).
        with transaction.atomic():
            serializer.is_valid(raise_exception=True)
            serializer.save(task=task)
        return Response(serializer.data, status=status.HTTP_201_CREATED)
