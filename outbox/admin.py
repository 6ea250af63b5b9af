"""The outbox in the Django admin: events, deliveries with their attempts, and a retry action."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path

from . import dashboard, services
from .eventlog import admin as eventlog_admin  # noqa: F401 - registers the event log's browser
from .models import Delivery, DeliveryAttempt, OutboxEvent


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("subscriber", "status", "attempts", "next_attempt_at", "completed_at", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "type",
        "version",
        "aggregate_type",
        "aggregate_id",
        "status",
        "created_at",
        "dispatched_at",
    )
    list_filter = ("status", "type")
    search_fields = ("=id", "=aggregate_id")
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    inlines = [DeliveryInline]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = (
        "number",
        "outcome",
        "started_at",
        "duration_ms",
        "worker",
        "celery_task_id",
        "error",
        "traceback",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "subscriber",
        "event_link",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "short_error",
    )
    list_filter = ("status", "subscriber", "event__type")
    search_fields = ("=event__id", "=event__aggregate_id")
    list_select_related = ("event",)
    readonly_fields = [f.name for f in Delivery._meta.fields]
    inlines = [AttemptInline]
    actions = ["retry_selected"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="event", ordering="event_id")
    def event_link(self, obj: Delivery) -> str:
        return f"#{obj.event_id}"

    @admin.display(description="event type", ordering="event__type")
    def event_type(self, obj: Delivery) -> str:
        return obj.event.type

    @admin.display(description="last error")
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:120]

    # Re-dispatching runs subscribers again (pushes, LLM calls): a change, not a view. Django
    # then neither lists the action nor runs a posted one for a user without change_delivery.
    @admin.action(description="Retry selected deliveries (dead or waiting)", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = services.retry_deliveries(queryset)
        skipped = queryset.count() - count
        self.message_user(request, f"{count} deliveries re-dispatched.", messages.SUCCESS)
        if skipped > 0:
            self.message_user(
                request,
                f"{skipped} skipped: only dead or waiting deliveries are retried "
                "(`manage.py outbox replay` re-runs succeeded ones).",
                messages.WARNING,
            )

    def get_urls(self) -> list[Any]:
        health = path("health/", self.admin_site.admin_view(dashboard.health_view), name="outbox_health")
        return [health, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "outbox_status": services.status()}
        return super().changelist_view(request, extra_context=extra_context)
