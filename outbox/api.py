"""What other apps import from the outbox: the small public surface, in one place."""

from .errors import Deferred, PermanentError, TransientError, is_infrastructure_fault
from .events import Event
from .publish import publish
from .registry import RetryPolicy, subscriber

__all__ = [
    "Deferred",
    "Event",
    "PermanentError",
    "RetryPolicy",
    "TransientError",
    "is_infrastructure_fault",
    "publish",
    "subscriber",
]
