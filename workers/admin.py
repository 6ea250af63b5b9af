"""What the subscribers produce, in the Django admin (read-mostly: the subscribers write it)."""

from django.contrib import admin

from .models import (
    Device,
    MemoryEntry,
    Notification,
    Preferences,
    ProgressSnapshot,
    PushReceipt,
    StorySegment,
)


@admin.register(ProgressSnapshot)
class ProgressSnapshotAdmin(admin.ModelAdmin):
    list_display = (
        "project",
        "percent",
        "tasks_done",
        "tasks_total",
        "streak_days",
        "event_id",
        "created_at",
    )
    raw_id_fields = ("project",)


@admin.register(StorySegment)
class StorySegmentAdmin(admin.ModelAdmin):
    list_display = ("title", "kind", "owner", "writer", "created_at")
    list_filter = ("kind", "writer")
    search_fields = ("title", "=subject_id")
    raw_id_fields = ("owner",)


class PushReceiptInline(admin.TabularInline):
    model = PushReceipt
    extra = 0
    readonly_fields = ("device", "status", "provider_message_id", "error", "created_at")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "kind", "read_at", "push_due_at", "created_at")
    list_filter = ("kind",)
    raw_id_fields = ("owner",)
    inlines = [PushReceiptInline]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("owner", "platform", "active", "deactivated_reason", "created_at")
    list_filter = ("platform", "active")
    raw_id_fields = ("owner",)


@admin.register(Preferences)
class PreferencesAdmin(admin.ModelAdmin):
    list_display = ("user", "time_zone", "push_enabled", "quiet_hours_start", "quiet_hours_end")
    raw_id_fields = ("user",)


@admin.register(MemoryEntry)
class MemoryEntryAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "updated_at")
    search_fields = ("title", "=task_id")
    raw_id_fields = ("owner",)
    exclude = ("embedding",)
