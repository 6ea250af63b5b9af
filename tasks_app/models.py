"""The domain: goals, projects, tasks and the media attached to tasks, each owned by a user."""

import uuid

from django.conf import settings
from django.db import models


class Owned(models.Model):
    """A row that belongs to one user: the API only ever shows it to them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class Goal(Owned):
    class Status(models.TextChoices):
        ACTIVE = "active"
        REACHED = "reached"
        ARCHIVED = "archived"

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=10_000)
    target_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Derived: written by the progress subscriber after each task event.
    progress_percent = models.DecimalField(max_digits=5, decimal_places=2, default=0, editable=False)

    class Meta(Owned.Meta):
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return self.title


class Project(Owned):
    class Status(models.TextChoices):
        ACTIVE = "active"
        COMPLETED = "completed"
        ARCHIVED = "archived"

    goal = models.ForeignKey(Goal, null=True, blank=True, on_delete=models.SET_NULL, related_name="projects")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=10_000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Derived: written by the progress subscriber after each task event.
    progress_percent = models.DecimalField(max_digits=5, decimal_places=2, default=0, editable=False)

    class Meta(Owned.Meta):
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return self.title


class Task(Owned):
    class Status(models.TextChoices):
        TODO = "todo"
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=10_000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TODO)
    completed_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    estimate = models.PositiveIntegerField(
        null=True, blank=True, help_text="Effort in points; weights the project's progress."
    )

    class Meta(Owned.Meta):
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["project", "status"]),
            models.Index(fields=["owner", "completed_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status="completed", completed_at__isnull=False)
                | (~models.Q(status="completed") & models.Q(completed_at__isnull=True)),
                name="task_completed_at_iff_completed",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_completed(self) -> bool:
        return self.status == self.Status.COMPLETED


class MediaAttachment(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image"
        AUDIO = "audio"
        VIDEO = "video"
        LINK = "link"
        NOTE = "note"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="media")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    url = models.URLField(max_length=2000, blank=True)
    caption = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.caption or self.url}"
