"""The express lane: during a burst, a light owner's work does not wait behind the burst's batches.

Dealing in turns (outbox/fairness.py) puts another owner's delivery first in the next batch,
but not ahead of the batch already running: a worker process busy with a hundred of a burst's
deliveries (seconds on a busy machine, since a batch's fixed costs grow with the owner's
data) holds every delivery queued behind it, and smaller batches would make the burst's
drain pay those fixed costs many times over. So capacity is set aside instead.

While a subscriber has more than EXPRESS_BACKLOG deliveries waiting, the relay marks the
deliveries of owners with at most EXPRESS_OWNER_LIMIT waiting `express` and, besides the
subscriber's own queue as always, publishes them to its express queue (`<queue>.express`),
which a worker of its own consumes (the Procfile's `express`: idle but for bursts). An
express message runs its own deliveries and the subscriber's other express ones waiting, in
one batch. Below the backlog threshold nothing changes.

The lane only adds a way: an express delivery is a dispatched delivery like any other, also
published to its subscriber's queue and dealt there in turns; whichever worker claims it
first runs it (SKIP LOCKED makes that once), and without an express worker it is delivered
as before, just not sooner. Two queries a relay run while the lane is on, each a few index
probes: how many wait per subscriber (counted up to the threshold), and, for the subscribers
over it, whether each owner of the run has more than its limit waiting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from django.db import connection

from . import conf
from .models import Delivery

_BACKLOGGED = """
SELECT s.name FROM unnest(%(subscribers)s::text[]) AS s(name)
WHERE (
    SELECT count(*) FROM (
        SELECT 1 FROM outbox_delivery
        WHERE status = 'dispatched' AND subscriber >= s.name AND subscriber <= s.name
        ORDER BY subscriber, owner_key, id  -- off the partial index of waiting deliveries
        LIMIT %(backlog)s + 1
    ) AS waiting
) > %(backlog)s
"""

# Of these (subscriber, owner) pairs, those with more than `room` deliveries already waiting.
_HEAVY = """
SELECT p.subscriber, p.owner_key
FROM unnest(%(subscribers)s::text[], %(owners)s::text[], %(rooms)s::int[]) AS p(subscriber, owner_key, room)
WHERE EXISTS (
    SELECT 1 FROM outbox_delivery
    WHERE status = 'dispatched' AND subscriber = p.subscriber
        AND owner_key >= p.owner_key AND owner_key <= p.owner_key  -- a range: see fairness._DEALT
    ORDER BY subscriber, owner_key, id
    OFFSET p.room LIMIT 1
)
"""


def enabled() -> bool:
    return bool(conf.get("EXPRESS_LANE") and conf.get("FAIR_SHARE"))


def mark(deliveries: Sequence[Delivery]) -> None:
    """Mark `express` the deliveries (not saved yet: the relay's new ones) that take the express
    lane: their subscriber is backlogged, and their owner has little waiting, these included."""
    if not deliveries or not enabled():
        return
    limit = conf.get("EXPRESS_OWNER_LIMIT")
    subscribers = sorted({d.subscriber for d in deliveries})
    with connection.cursor() as cursor:
        cursor.execute(_BACKLOGGED, {"subscribers": subscribers, "backlog": conf.get("EXPRESS_BACKLOG")})
        backlogged = {row[0] for row in cursor.fetchall()}
        if not backlogged:
            return
        here = Counter((d.subscriber, d.owner_key) for d in deliveries if d.subscriber in backlogged)
        # An owner with more than its limit in this run alone is heavy without asking.
        candidates = [(pair, limit - n) for pair, n in here.items() if n <= limit]
        cursor.execute(
            _HEAVY,
            {
                "subscribers": [sub for (sub, _), _ in candidates],
                "owners": [owner for (_, owner), _ in candidates],
                "rooms": [room for _, room in candidates],
            },
        )
        heavy = {(sub, owner) for sub, owner in cursor.fetchall()}
    light = {pair for pair, _ in candidates} - heavy
    for d in deliveries:
        if (d.subscriber, d.owner_key) in light:
            d.express = True
