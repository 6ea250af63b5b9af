"""The workers app's models, each defined beside the subscriber it belongs to; Django finds
them here."""

from .memory.models import MemoryEntry
from .notifications.models import Device, Notification, Preferences, PushReceipt
from .progress.models import ProgressSnapshot
from .story.models import StorySegment

__all__ = [
    "Device",
    "MemoryEntry",
    "Notification",
    "Preferences",
    "ProgressSnapshot",
    "PushReceipt",
    "StorySegment",
]
