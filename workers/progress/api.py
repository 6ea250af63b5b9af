"""The progress API: a project's figures now and its history of snapshots."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks_app.models import Project

from ..models import ProgressSnapshot
from . import figures as progress

HISTORY_LIMIT = 100


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
