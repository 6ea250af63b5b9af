"""The domain models in the Django admin."""

from django.contrib import admin

from .models import Goal, MediaAttachment, Project, Task


class MediaInline(admin.TabularInline):
    model = MediaAttachment
    extra = 0


@admin.register(Goal)
class GoalAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "status", "target_date", "created_at")
    list_filter = ("status",)
    search_fields = ("title", "owner__username", "=id")
    raw_id_fields = ("owner",)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "goal", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("title", "owner__username", "=id")
    raw_id_fields = ("owner", "goal")


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "project", "status", "completed_at", "due_date")
    list_filter = ("status",)
    search_fields = ("title", "owner__username", "=id")
    raw_id_fields = ("owner", "project")
    inlines = [MediaInline]
    # Completion goes through complete_task() so its event is written; not an admin edit.
    readonly_fields = ("status", "completed_at")
