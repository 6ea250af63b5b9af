"""What other apps import from the outbox: the small public surface, in one place."""

from .errors import PermanentError, TransientError, is_infrastructure_fault
from .events import Event
from .publish import publish
from .registry import RetryPolicy, subscriber

__all__ = [
    "Event",
    "PermanentError",
    "RetryPolicy",
    "TransientError",
    "is_infrastructure_fault",
    "publish",
    "subscriber",
]
