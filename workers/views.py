"""The API over what the subscribers produce: progress, story, notifications; devices and preferences."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks_app.models import Project

from .memory import recall
from .models import Device, Notification, Preferences, StorySegment
from .progress import figures as progress
from .serializers import (
    DeviceSerializer,
    MemorySearchQuerySerializer,
    MemorySearchSerializer,
    NotificationSerializer,
    PreferencesSerializer,
    ProgressSerializer,
    StorySegmentSerializer,
)

HISTORY_LIMIT = 100


class ProjectProgressView(APIView):
    """The project's current progress (computed now) and its history of snapshots, newest first."""

    @extend_schema(responses={200: ProgressSerializer})
    def get(self, request: Request, pk: str) -> Response:
        project = get_object_or_404(Project.objects.filter(owner=request.user), pk=pk)
        figures = progress.project_figures(project)
        user = progress.user_figures(request.user.pk)
        data = {
            "project": project.pk,
            "percent": figures.percent,
            "tasks_done": figures.tasks_done,
            "tasks_total": figures.tasks_total,
            "goal_percent": progress.goal_percent(project.goal) if project.goal else None,
            "streak_days": user.streak_days,
            "pace_per_week": user.pace_per_week,
            "estimated_finish": progress.estimated_finish(project, figures, user, user.today),
            "history": project.snapshots.all()[:HISTORY_LIMIT],
        }
        return Response(ProgressSerializer(data).data)


class StoryListView(generics.ListAPIView):
    """The caller's story segments, newest first."""

    serializer_class = StorySegmentSerializer

    def get_queryset(self) -> QuerySet[StorySegment]:
        return StorySegment.objects.filter(owner=self.request.user).order_by("-created_at", "-id")


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


class MemorySearchView(APIView):
    """Semantic search over the caller's own remembered (completed) tasks, best first."""

    @extend_schema(parameters=[MemorySearchQuerySerializer], responses={200: MemorySearchSerializer})
    def get(self, request: Request) -> Response:
        params = MemorySearchQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        hits = recall.search(request.user.pk, params.validated_data["q"], params.validated_data["k"])
        results = [recall.as_dict(h) for h in hits]
        return Response(MemorySearchSerializer({"results": results}).data)
