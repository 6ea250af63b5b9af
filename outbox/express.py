"""The express lane: during a burst, a light owner's work does not wait behind the burst's batches.

Dealing in turns (outbox/fairness.py) puts another owner's delivery first in the next batch,
but not ahead of the batch already running: a worker process busy with a hundred of a burst's
deliveries (seconds on a busy machine, since a batch's fixed costs grow with the owner's
data) holds every delivery queued behind it, and smaller batches would make the burst's
drain pay those fixed costs many times over. So capacity is set aside instead.

While any subscriber has more than EXPRESS_BACKLOG deliveries waiting, the relay marks
`express` the deliveries of owners with at most EXPRESS_OWNER_LIMIT waiting for each subscriber
and, besides the subscribers' own queues as always, publishes them to their express queues
(`<queue>.express`), which a worker of its own consumes (the Procfile's `express`: idle but
for bursts). All of such an owner's deliveries, not only the backlogged subscriber's: subscribers
share worker processes (the Procfile's `worker` runs progress, story and notifications), so
a burst in one subscriber's queue also holds the others' messages behind its batches (measured:
at the end of a burst, with story still backlogged and progress not, a light owner's progress
waited a second behind story's batches). An express message runs its own deliveries and the
subscriber's other express ones waiting, in one batch. With no subscriber backlogged nothing
changes.

The lane only adds a way: an express delivery is a dispatched delivery like any other, also
published to its subscriber's queue and dealt there in turns; whichever worker claims it
first runs it (SKIP LOCKED makes that once), and without an express worker it is delivered
as before, just not sooner. Two queries a relay run while the lane is on, each a few index
probes: how many wait per subscriber (counted up to the threshold), and whether each owner
of the run has more than its limit waiting for any subscriber.
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
    lane: a subscriber of the run is backlogged, and their owner has little waiting for every
    subscriber, these included."""
    if not deliveries or not enabled():
        return
    limit = conf.get("EXPRESS_OWNER_LIMIT")
    subscribers = sorted({d.subscriber for d in deliveries})
    with connection.cursor() as cursor:
        cursor.execute(_BACKLOGGED, {"subscribers": subscribers, "backlog": conf.get("EXPRESS_BACKLOG")})
        if not cursor.fetchall():
            return
        here = Counter((d.subscriber, d.owner_key) for d in deliveries)
        # An owner with more than its limit in this run alone is heavy without asking.
        heavy = {owner for (_, owner), n in here.items() if n > limit}
        candidates = [
            (sub, owner, limit - here[sub, owner])
            for owner in sorted({d.owner_key for d in deliveries} - heavy)
            for sub in subscribers
        ]
        if candidates:
            subs, owners, rooms = (list(column) for column in zip(*candidates, strict=True))
            cursor.execute(_HEAVY, {"subscribers": subs, "owners": owners, "rooms": rooms})
            heavy.update(owner for _, owner in cursor.fetchall())
    for d in deliveries:
        if d.owner_key not in heavy:
            d.express = True
