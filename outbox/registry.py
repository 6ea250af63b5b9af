"""The subscriber registry: who takes which events, on which queue, with which retry policy.

A subscriber is declared once, in its own module, with the `subscriber` decorator:

    @subscriber("memory", events=["task.completed"], queue="memory")
    def index_task(event: Event) -> None: ...

Each subscriber becomes its own named Celery task (named after the handler, e.g.
`workers.memory.index_task`) on its own queue, so Flower and the worker logs show
them apart and a slow one never holds up another's queue.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Task as CeleryTask
from celery import shared_task

from .errors import TransientError, is_infrastructure_fault

if TYPE_CHECKING:
    from .events import Event

Handler = Callable[["Event"], None]
# Takes the batch (and, for a subscriber with `prepare`, what prepare returned). Returns None
# when it handled them all; or the ids of the events it leaves to be run one by one; or a
# mapping of event id to the exception that event failed with (None: left to one by one).
BatchHandler = Callable[..., "Collection[int] | Mapping[int, Exception | None] | None"]
Prepare = Callable[[Sequence["Event"]], Any]


class DuplicateSubscriber(Exception):
    """Two subscribers were declared with the same name: a programming error, raised at import."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a subscriber's transient failures are retried (Celery's vocabulary, our own scheduler).

    The exceptions in `retry_for` are transient, and so are the database's and the
    broker's connection errors whatever `retry_for` says (see `errors`); anything else is
    permanent and makes the delivery dead at once. An infrastructure fault is retried with
    this backoff too, but never uses up `max_retries`: a database that is away for an
    hour makes deliveries late, not dead.
    """

    max_retries: int = 5
    backoff: float = 2.0  # seconds before the first retry; doubles each time
    backoff_max: float = 600.0
    jitter: bool = True
    retry_for: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self.retry_for) or is_infrastructure_fault(exc)


@dataclass(frozen=True)
class Subscriber:
    name: str
    events: frozenset[str]
    queue: str
    handler: Handler
    retry: RetryPolicy
    task: CeleryTask = field(repr=False)
    # Optional: handles many events in one call, with a constant number of queries (one
    # embedding model call, one multicast push). When it raises, the batch is re-run one
    # event at a time so that one bad event fails alone; the events whose ids it returns are
    # run one by one after it (a push deferred by quiet hours, a device to retry), and the
    # failures it maps to event ids are recorded on their deliveries as one by one would.
    batch_handler: BatchHandler | None = field(default=None, repr=False)
    # Optional, with a batch handler: slow work that needs no lock (an LLM writing a story),
    # run before the deliveries are claimed and outside any transaction. What it returns is
    # passed to the batch handler, which must check it still holds under its locks. Every
    # delivery of such a subscriber goes through the batch handler, even alone.
    prepare: Prepare | None = field(default=None, repr=False)
    # True: the handler's writes roll back when it raises (the default, and what
    # makes a database effect exactly-once). False: what it wrote before raising
    # is kept and committed with the failure; for handlers with outside effects
    # that record their own progress (a push per device) so a retry skips it.
    atomic: bool = True

    @property
    def express_queue(self) -> str:
        """Where a light owner's deliveries go during a burst (outbox/express.py)."""
        return f"{self.queue}.express"


_subscribers: dict[str, Subscriber] = {}


def subscriber(
    name: str,
    *,
    events: Iterable[str],
    queue: str | None = None,
    retry: RetryPolicy | None = None,
    batch_handler: BatchHandler | None = None,
    prepare: Prepare | None = None,
    atomic: bool = True,
    task_name: str | None = None,
) -> Callable[[Handler], Handler]:
    """Register `handler` as the subscriber `name` for `events`.

    Its Celery task is named `task_name`, by default after the handler (module.function).
    Name it explicitly when the module may move: messages queued under the old name would
    find no task to run them (the sweeper would re-publish them, late).
    """

    def register(handler: Handler) -> Handler:
        if name in _subscribers:
            raise DuplicateSubscriber(f"a subscriber named {name!r} is already registered")
        if prepare is not None and batch_handler is None:
            raise TypeError(f"subscriber {name!r}: prepare needs a batch_handler to pass its result to")
        full_name = task_name or f"{handler.__module__}.{handler.__name__}"
        _subscribers[name] = Subscriber(
            name=name,
            events=frozenset(events),
            queue=queue or name,
            handler=handler,
            retry=retry or RetryPolicy(),
            task=_make_task(name, full_name),
            batch_handler=batch_handler,
            prepare=prepare,
            atomic=atomic,
        )
        return handler

    return register


def _make_task(subscriber_name: str, task_name: str) -> CeleryTask:
    # Imported here: the delivery module needs the registry, not the other way round.
    from .message import run_message

    def deliver(self: CeleryTask, delivery_ids: list[int], express: bool = False) -> dict[str, int]:
        return run_message(self, subscriber_name, delivery_ids, express=express)

    deliver.__name__ = task_name.rsplit(".", 1)[-1]
    return shared_task(
        name=task_name,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
    )(deliver)


def route(
    name: str, args: object, kwargs: object, options: object, task: object = None, **kw: object
) -> dict | None:
    """Celery task router (CELERY_TASK_ROUTES): a subscriber's task goes to its queue however it is sent."""
    for sub in _subscribers.values():
        if sub.task.name == name:
            return {"queue": sub.queue}
    return None


def get(name: str) -> Subscriber:
    return _subscribers[name]


def all_subscribers() -> list[Subscriber]:
    return list(_subscribers.values())


def for_event(event_type: str) -> list[Subscriber]:
    return [s for s in _subscribers.values() if event_type in s.events]


def queues() -> list[str]:
    """Every subscriber's queue and its express queue."""
    return sorted({q for s in _subscribers.values() for q in (s.queue, s.express_queue)})
