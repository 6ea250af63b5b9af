"""API serializers for the domain; related ids are only accepted if the caller owns them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.db.models import Model, QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from .models import Goal, MediaAttachment, Project, Task

User = get_user_model()


class StrictSerializerMixin:
    """Reject fields the serializer does not know, instead of silently ignoring a typo."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            known = {name for name, f in self.fields.items() if not f.read_only}  # type: ignore[attr-defined]
            unknown = sorted(set(data) - known)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


class OwnedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related id that must belong to the requesting user; anyone else's is "does not exist"."""

    def get_queryset(self) -> QuerySet[Model]:
        request = self.context["request"]
        return super().get_queryset().filter(owner=request.user)


class RegisterSerializer(StrictSerializerMixin, serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    password = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})

    def validate_username(self, value: str) -> str:
        if User.objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("This username is taken.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        password_validation.validate_password(attrs["password"], User(username=attrs["username"]))
        return attrs


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)


class GoalSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Goal
        fields = [
            "id",
            "title",
            "description",
            "target_date",
            "status",
            "progress_percent",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "progress_percent", "created_at", "updated_at"]


class ProjectSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    goal = OwnedPrimaryKeyRelatedField(queryset=Goal.objects.all(), allow_null=True, required=False)

    class Meta:
        model = Project
        fields = [
            "id",
            "goal",
            "title",
            "description",
            "status",
            "progress_percent",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "progress_percent", "created_at", "updated_at"]


class MediaAttachmentSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = MediaAttachment
        fields = ["id", "kind", "url", "caption", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("url") and not attrs.get("caption"):
            raise serializers.ValidationError("An attachment needs a url, a caption, or both.")
        task: Task | None = self.context.get("task")
        if task is not None:
            self._check_room_on(task)
        return attrs

    @staticmethod
    def _check_room_on(task: Task) -> None:
        """Refuse an attachment past the cap. The caller holds a transaction: the task's row stays
        locked until the attachment is saved, so two attaches at once cannot both take the last place."""
        limit = settings.SELFOS_MAX_MEDIA_PER_TASK
        if not Task.objects.select_for_update(no_key=True).filter(pk=task.pk).values_list("pk"):
            raise NotFound("No Task matches the given query.")  # deleted since the view found it
        if MediaAttachment.objects.filter(task=task).count() >= limit:
            raise serializers.ValidationError(
                f"A task holds at most {limit} media attachments, and this one is full.",
                code="media_limit",
            )


class TaskSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    project = OwnedPrimaryKeyRelatedField(queryset=Project.objects.all(), allow_null=True, required=False)
    status = serializers.ChoiceField(
        choices=Task.Status.choices,
        required=False,
        help_text="todo or in_progress; complete a task with PUT /api/tasks/{id}/complete/.",
    )
    media = serializers.SerializerMethodField(
        help_text="The task's first media attachments, at most SELFOS_TASK_MEDIA_PREVIEW (10 by default); "
        "all of them, paginated, are at `media_url`."
    )
    media_count = serializers.SerializerMethodField(help_text="How many media attachments the task has.")
    media_url = serializers.SerializerMethodField(
        help_text="The paginated list of all the task's media (GET), where new ones are attached (POST)."
    )

    class Meta:
        model = Task
        fields = [
            "id",
            "project",
            "title",
            "description",
            "status",
            "completed_at",
            "due_date",
            "estimate",
            "media",
            "media_count",
            "media_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "completed_at", "created_at", "updated_at"]
        extra_kwargs = {"estimate": {"max_value": 1_000_000}}

    def validate_status(self, value: str) -> str:
        # Completion has side effects (an event, four subscribers): it goes through
        # its own endpoint and service, never a field write.
        if value == Task.Status.COMPLETED and not (self.instance and self.instance.is_completed):
            raise serializers.ValidationError("Use PUT /api/tasks/{id}/complete/ to complete a task.")
        return value

    # The view prefetches `media`: slicing and counting then read the prefetched rows, with no query.
    @extend_schema_field(MediaAttachmentSerializer(many=True))
    def get_media(self, task: Task) -> list[dict[str, Any]]:
        preview = task.media.all()[: settings.SELFOS_TASK_MEDIA_PREVIEW]
        return MediaAttachmentSerializer(preview, many=True, context=self.context).data

    @extend_schema_field(OpenApiTypes.INT)
    def get_media_count(self, task: Task) -> int:
        return task.media.count()

    @extend_schema_field(OpenApiTypes.URI)
    def get_media_url(self, task: Task) -> str:
        # The routes take an optional trailing slash, which reverse() leaves out; the documented
        # form has it.
        url = reverse("task-media", args=[task.pk]) + "/"
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url
