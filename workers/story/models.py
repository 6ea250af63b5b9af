"""The story's model: one segment per completed task, project or goal."""

import uuid

from django.conf import settings
from django.db import models


class StorySegment(models.Model):
    """A piece of the user's story: one per completed task, one per finished project or goal."""

    class Kind(models.TextChoices):
        TASK = "task"
        PROJECT = "project"  # chapter close
        GOAL = "goal"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    subject_id = models.UUIDField(help_text="The task, project or goal the segment is about.")
    event_id = models.BigIntegerField()
    title = models.CharField(max_length=300)
    text = models.TextField()
    media = models.JSONField(default=list, blank=True)
    recalled = models.JSONField(default=list, blank=True)
    writer = models.CharField(max_length=100)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "subject_id"], name="story_segment_once_per_subject")
        ]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return self.title
