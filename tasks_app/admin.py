"""The domain models in the Django admin."""

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from . import services
from .models import Goal, MediaAttachment, Project, Task


class MediaInline(admin.TabularInline):
    model = MediaAttachment
    extra = 0


class DeleteThroughServices(admin.ModelAdmin):
    """Deletes, single and bulk, go through the service function, so they emit the API's event
    and every subscriber forgets the row (the admin's own delete would write no event)."""

    delete_service: Any  # the model's delete service from tasks_app.services
    delete_related: tuple[str, ...] = ()  # what the service reads of each row (select_related)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_service(obj)

    @transaction.atomic
    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset.select_related(*self.delete_related):
            self.delete_service(obj)


@admin.register(Goal)
class GoalAdmin(DeleteThroughServices):
    delete_service = staticmethod(services.delete_goal)
    list_display = ("title", "owner", "status", "target_date", "created_at")
    list_filter = ("status",)
    search_fields = ("title", "owner__username", "=id")
    raw_id_fields = ("owner",)


@admin.register(Project)
class ProjectAdmin(DeleteThroughServices):
    delete_service = staticmethod(services.delete_project)
    list_display = ("title", "owner", "goal", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("title", "owner__username", "=id")
    raw_id_fields = ("owner", "goal")


@admin.register(Task)
class TaskAdmin(DeleteThroughServices):
    delete_service = staticmethod(services.delete_task)
    delete_related = ("project",)
    list_display = ("title", "owner", "project", "status", "completed_at", "due_date")
    list_filter = ("status",)
    search_fields = ("title", "owner__username", "=id")
    raw_id_fields = ("owner", "project")
    inlines = [MediaInline]
    # Completion goes through complete_task() so its event is written; not an admin edit.
    readonly_fields = ("status", "completed_at")
