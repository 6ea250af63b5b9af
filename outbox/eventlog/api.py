"""`GET /api/events/`: the caller's own history from the event log, newest first.

Owner-scoped by construction: the queryset starts from `owner_id = request.user.pk`, and no
parameter can widen it. Cursor pagination: a feed of millions of rows pages in constant time
(an index range per page, no COUNT and no OFFSET), and new events do not shift the pages.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from .models import EventLog


class EventSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="event_id", read_only=True)

    class Meta:
        model = EventLog
        fields = ["id", "type", "version", "aggregate_type", "aggregate_id", "payload", "committed_at"]
        read_only_fields = fields


class FeedFilters(serializers.Serializer):
    """The query string, validated: a bad value is a 400 naming it, never a 500 or an empty page."""

    type = serializers.CharField(required=False, max_length=100, help_text="Only events of this type.")
    since = serializers.DateTimeField(required=False, help_text="Committed at or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Committed before (ISO 8601).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "must be later than since"})
        return attrs


class FeedPagination(CursorPagination):
    # committed_at leads (the owner index's order); event_id breaks ties between events of one
    # transaction, so the order is total and pages neither repeat nor skip a row.
    ordering = ("-committed_at", "-event_id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class EventFeedView(generics.ListAPIView):
    """The caller's events, newest first; `type`, `since` and `until` narrow them."""

    serializer_class = EventSerializer
    pagination_class = FeedPagination

    def get_queryset(self) -> QuerySet[EventLog]:
        filters = FeedFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        rows = EventLog.objects.filter(owner_id=self.request.user.pk)
        if event_type := filters.validated_data.get("type"):
            rows = rows.filter(type=event_type)
        if since := filters.validated_data.get("since"):
            rows = rows.filter(committed_at__gte=since)
        if until := filters.validated_data.get("until"):
            rows = rows.filter(committed_at__lt=until)
        return rows

    # The filter serializer's fields become the documented query parameters.
    @extend_schema(parameters=[FeedFilters])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
