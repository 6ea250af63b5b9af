"""What other apps import from the outbox: the small public surface, in one place."""

from .errors import PermanentError, TransientError
from .events import Event
from .publish import publish
from .registry import RetryPolicy, subscriber

__all__ = ["Event", "PermanentError", "RetryPolicy", "TransientError", "publish", "subscriber"]
