"""What other apps import from the outbox: the small public surface, in one place."""

from .errors import Deferred, PermanentError, TransientError
from .eventlog.writer import forget_aggregate as forget_history
from .events import Event
from .publish import publish
from .registry import RetryPolicy, subscriber

__all__ = [
    "Deferred",
    "Event",
    "PermanentError",
    "RetryPolicy",
    "TransientError",
    "forget_history",
    "publish",
    "subscriber",
]
