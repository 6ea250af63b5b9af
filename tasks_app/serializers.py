"""API serializers for the domain; related ids are only accepted if the caller owns them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.db.models import Model, QuerySet
from rest_framework import serializers

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
        return attrs


class TaskSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    project = OwnedPrimaryKeyRelatedField(queryset=Project.objects.all(), allow_null=True, required=False)
    status = serializers.ChoiceField(
        choices=Task.Status.choices,
        required=False,
        help_text="todo or in_progress; complete a task with PUT /api/tasks/{id}/complete/.",
    )
    media = MediaAttachmentSerializer(many=True, read_only=True)

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
