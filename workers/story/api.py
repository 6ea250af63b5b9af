"""The story API: the caller's story segments, newest first."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import generics, serializers

from ..models import StorySegment


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


class StoryListView(generics.ListAPIView):
    """The caller's story segments, newest first."""

    serializer_class = StorySegmentSerializer

    def get_queryset(self) -> QuerySet[StorySegment]:
        return StorySegment.objects.filter(owner=self.request.user).order_by("-created_at", "-id")
