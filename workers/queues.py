"""The Celery queue of each subscriber, in one place (the Procfile and compose name them too)."""

from enum import StrEnum


class Queue(StrEnum):
    PROGRESS = "progress"
    STORY = "story"
    NOTIFICATIONS = "notifications"
    MEMORY = "memory"
