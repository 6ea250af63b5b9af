"""The kinds of failure a delivery can meet: try again later, give up now, or infrastructure away.

Transient vs permanent is decided by what failed, not where. A subscriber says which of
its own errors are transient (`RetryPolicy.retry_for`); the outbox's own infrastructure,
the database and the broker, is transient everywhere: a PostgreSQL restart, a failover or
a network blip makes deliveries wait and retry, never go dead. Dead means the handler's
own logic refused the event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime


class TransientError(Exception):
    """A failure that may pass (a timeout, a 5xx, a quota): the delivery is retried with backoff."""


class PermanentError(Exception):
    """A failure no retry can fix (bad payload, 4xx): the delivery goes dead at once."""


class Deferred(Exception):
    """Not now: run this delivery again at `until` (a user's quiet hours, say).

    Not a failure: it uses up no retry and writes no attempt; the delivery waits as
    pending and the sweeper dispatches it when due. The handler's writes roll back with
    it unless the subscriber is `atomic=False`.
    """

    def __init__(self, until: datetime, reason: str = "") -> None:
        super().__init__(f"deferred until {until.isoformat()}" + (f": {reason}" if reason else ""))
        self.until = until


@functools.cache
def infrastructure_errors() -> tuple[type[BaseException], ...]:
    """The database's and the broker's "I am not there" errors, whichever clients are installed.

    Django's OperationalError and InterfaceError cover a dropped or refused connection, a
    server that restarts under a query, a serialization failure or a deadlock; the driver's
    own classes are listed too for code that talks to psycopg directly. IntegrityError,
    ProgrammingError and DataError are not here: they are the handler's own doing.
    """
    import django.db
    import kombu.exceptions

    found: list[type[BaseException]] = [
        django.db.OperationalError,
        django.db.InterfaceError,
        kombu.exceptions.OperationalError,
    ]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - another database driver
        pass
    else:
        found += [psycopg.OperationalError, psycopg.InterfaceError]
    try:
        import redis.exceptions
    except ImportError:  # pragma: no cover - another broker
        pass
    else:
        found += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    return tuple(found)


def is_infrastructure_fault(exc: BaseException) -> bool:
    return isinstance(exc, infrastructure_errors())


def cause_matching(exc: BaseException, test: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception in `exc`'s chain (itself, then what caused it or was being handled)
    that passes `test`: a fault is often re-raised as another (kombu's OperationalError around
    a RabbitMQ nack, "current transaction is aborted" while handling a lost connection)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if test(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
