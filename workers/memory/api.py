"""The memory API: semantic search over the caller's own remembered tasks."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from . import recall


class MemorySearchQuerySerializer(serializers.Serializer):
    # SELFOS_MAX_SEARCH_QUERY_CHARS (500 by default), read at start so the schema documents it.
    q = serializers.CharField(
        max_length=settings.SELFOS_MAX_SEARCH_QUERY_CHARS,
        trim_whitespace=True,
        help_text=f"What to look for, in words: at most {settings.SELFOS_MAX_SEARCH_QUERY_CHARS} characters.",
    )
    k = serializers.IntegerField(min_value=1, max_value=50, default=5, help_text="How many results, 1 to 50.")


class MemoryHitSerializer(serializers.Serializer):
    task = serializers.UUIDField()
    title = serializers.CharField()
    score = serializers.FloatField(help_text="Cosine similarity; 1 is identical.")


class MemorySearchSerializer(serializers.Serializer):
    results = MemoryHitSerializer(many=True)


class MemorySearchView(APIView):
    """Semantic search over the caller's own remembered (completed) tasks, best first."""

    # The embedding model runs in the web process: a scope tighter than the per-user one.
    throttle_classes = [UserRateThrottle, ScopedRateThrottle]
    throttle_scope = "memory_search"

    @extend_schema(parameters=[MemorySearchQuerySerializer], responses={200: MemorySearchSerializer})
    def get(self, request: Request) -> Response:
        params = MemorySearchQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        hits = recall.search(request.user.pk, params.validated_data["q"], params.validated_data["k"])
        results = [recall.as_dict(h) for h in hits]
        return Response(MemorySearchSerializer({"results": results}).data)
