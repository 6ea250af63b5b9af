"""One queued message per subscriber: while a subscriber's message waits in the broker, the
relay sends it no other, and the waiting one takes what accumulated meanwhile.

The relay runs after every commit, so under steady load each of its runs fans out an event
or two, and each subscriber gets a message per run. Every message costs the worker the same
(a Celery task, a claim, a commit, an attempt row) however few deliveries it carries, so
near capacity the workers spend their time on message overhead and the backlog grows. A
worker already takes its subscriber's waiting deliveries with a message (`delivery.
_with_waiting`), so a second message queued behind the first adds nothing but that cost.

The mark is a cache key per subscriber, set (`cache.add`) when the relay publishes a message
and deleted by the worker when it starts one, before it looks for waiting deliveries:

- the relay commits its deliveries, then tries to set the mark. If the mark is there, a
  message is queued and not yet started: the worker deletes the mark after this commit and
  then reads the waiting deliveries, so it sees these. Nothing is published;
- if the worker started first, the mark is gone: the relay sets it and publishes.

At low load every message finds the worker idle and nothing changes; near capacity the
batches grow with the backlog, and so does throughput. A message that carries more than a
batch, the sweeper's, an operator's retry and a replay are always published. A worker that
filled its batch from the waiting ones sends its subscriber a message for the rest (through
the same mark). The mark expires after QUEUED_MARK_SECONDS, so a lost message (a broker
restart) holds back the relay's messages no longer than that; its deliveries are the
sweeper's, as before. When the cache cannot be reached, every message is published.
"""

from __future__ import annotations

import contextlib
import logging

from django.core.cache import caches

from . import conf

logger = logging.getLogger(__name__)


def _key(subscriber: str, lane: str) -> str:
    # One mark per lane: an express message waiting does not hold back the burst's, nor the reverse.
    return f"outbox:message-queued:{subscriber}" + (f":{lane}" if lane else "")


def enabled() -> bool:
    # Coalesced messages rely on the worker taking what waits; without that, every message
    # must carry its own deliveries.
    return bool(conf.get("COALESCE_MESSAGES") and conf.get("TAKE_WAITING"))


def first_in_queue(subscriber: str, lane: str = "") -> bool:
    """Mark a message of `subscriber` as queued; False if one already is (send none)."""
    try:
        return bool(
            caches[conf.get("CACHE")].add(_key(subscriber, lane), 1, timeout=conf.get("QUEUED_MARK_SECONDS"))
        )
    except Exception:
        logger.warning("outbox: cannot reach the cache to coalesce messages; publishing", exc_info=True)
        return True


def started(subscriber: str, lane: str = "") -> None:
    """A worker starts a message of `subscriber`: from now on the relay's deliveries need a message
    of their own. Called before the worker reads the waiting deliveries."""
    try:
        caches[conf.get("CACHE")].delete(_key(subscriber, lane))
    except Exception:
        logger.warning("outbox: cannot clear the queued-message mark; it expires by itself", exc_info=True)


def not_sent(subscriber: str, lane: str = "") -> None:
    """The marked message could not be published: let the next relay run try."""
    with contextlib.suppress(Exception):
        caches[conf.get("CACHE")].delete(_key(subscriber, lane))
