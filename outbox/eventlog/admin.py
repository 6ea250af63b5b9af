"""The event log in the Django admin: a read-only browser, by type, owner and date."""

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import EventLog


class TypeFilter(admin.SimpleListFilter):
    """The event types seen in the last month (and the one chosen): Django's own field filter
    would run a DISTINCT over the whole log on every page; this one reads a partition or two."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = EventLog.objects.filter(committed_at__gte=timezone.now() - timedelta(days=31))
        types = set(recent.order_by().values_list("type", flat=True).distinct())
        if self.value():
            types.add(self.value())
        return [(t, t) for t in sorted(types)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[EventLog]) -> QuerySet[EventLog]:
        return queryset.filter(type=self.value()) if self.value() else queryset


class OwnerFilter(admin.SimpleListFilter):
    """`?owner=<user id>`: one owner's history. Not a list of every owner (a DISTINCT over the
    whole log); the choice offered is the owner being viewed, reached from a row or the URL."""

    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, f"user {value}")] if value and value.isdigit() else []

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet[EventLog]) -> QuerySet[EventLog]:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(owner_id=int(value))
        return queryset


@admin.register(EventLog)
class EventLogAdmin(admin.ModelAdmin):
    list_display = (
        "event_id",
        "type",
        "version",
        "aggregate_type",
        "aggregate_id",
        "owner_id",
        "committed_at",
    )
    # Dates as ranges (today, past 7 days, this month, this year): each prunes to its partitions,
    # where a date hierarchy would list the distinct dates of the whole log first.
    list_filter = (TypeFilter, OwnerFilter, ("committed_at", admin.DateFieldListFilter))
    # Exact matches only: an owner id, an event id or an aggregate id (each is indexed or cheap).
    search_fields = ("=owner_id", "=event_id", "=aggregate_id")
    readonly_fields = [f.name for f in EventLog._meta.fields]
    # Counting a log of millions of rows on every page is the slow part of a changelist.
    show_full_result_count = False
    list_per_page = 50

    # Append-only: nobody adds, edits or deletes log rows here, superusers included (the
    # account delete and the archive command are the only ways rows leave).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
