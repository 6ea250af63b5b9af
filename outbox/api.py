"""What other apps import from the outbox: the small public surface, in one place."""

from .errors import Deferred, PermanentError, TransientError
from .events import Event
from .publish import publish
from .registry import RetryPolicy, subscriber

__all__ = [
    "Deferred",
    "Event",
    "PermanentError",
    "RetryPolicy",
    "TransientError",
    "publish",
    "subscriber",
]
