"""Test-only changes to the outbox's subscriber registry: activate a few, forget one.

The registry keeps its subscribers in a module dict; these swap or edit it for one test,
so the production registry carries no hooks of its own for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from outbox import registry


@contextlib.contextmanager
def only(*names: str) -> Iterator[None]:
    """Within the block, only the named subscribers are active."""
    saved = registry._subscribers
    registry._subscribers = {n: s for n, s in saved.items() if n in names}
    try:
        yield
    finally:
        registry._subscribers = saved


def unregister(name: str) -> None:
    """Forget a subscriber a test declared, and its Celery task."""
    sub = registry._subscribers.pop(name, None)
    if sub is not None:
        sub.task.app.tasks.pop(sub.task.name, None)
