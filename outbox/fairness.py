"""Fair share: waiting work is taken in turns across owners, not oldest first.

An event's owner is a key in its payload (OWNER_KEY, `user_id` by default), copied into
`OutboxEvent.owner_key` by `publish()` and into `Delivery.owner_key` by the relay. Taking
the oldest rows first lets one owner's burst (an import, a script: thousands of completions
at once) hold every other owner behind it until it has drained. Here, both the relay's
claim and a worker's batch are dealt like cards: every owner's oldest row, then every
owner's second, and so on, owners with the oldest waiting row first within a turn. A burst
is served at its owner's share while everyone else keeps the latency of an idle system; an
owner alone still gets the whole batch, so a burst drains as fast as before.

Two queries, bounded however large the backlog grows:
- the owners who have work waiting, found by a skip scan of the partial index on
  (owner_key, id) (one index probe per owner, at most `limit` owners: past that many, each
  gets at most one row of the batch anyway);
- from each of them, its oldest `share` rows (`limit` split evenly among them), and the
  `limit` oldest rows overall (so the room an owner with little waiting leaves is filled,
  and owners past the skip scan's `limit` still move forward, oldest first);
- those candidates ordered by their turn (rank within their owner), then by age.

A worker then runs what it was dealt fresh first (`plan`: the light owners' work, committed
on its own, before the burst's). What arrives while a burst's batch runs does not wait
for it: outbox/express.py sends it down a lane of its own.

The candidates are read without locks; callers lock what they take with FOR UPDATE SKIP
LOCKED and check its status again under the lock, as they did before, so every guarantee of
the claim (no row taken twice, nothing taken that another transaction changed) is the
lock's, not this query's. Two relays that read the same candidates at once split them:
what one locked the other skips, and it takes the rest on its next claim.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from . import conf

# The waiting rows of each table, spelled as their partial indexes' conditions (models.py) so
# that the planner uses them: status is a literal, not a parameter.
_WAITING = {
    "events": ("outbox_outboxevent", "status = 'pending'"),
    "deliveries": ("outbox_delivery", "status = 'dispatched' AND subscriber = %(subscriber)s"),
}

_OWNERS = """
WITH RECURSIVE owners(owner_key, seen) AS (
    (SELECT owner_key, 1 FROM {table} WHERE {waiting} ORDER BY owner_key LIMIT 1)
  UNION ALL
    SELECT later.owner_key, owners.seen + 1
    FROM owners CROSS JOIN LATERAL (
        SELECT owner_key FROM {table}
        WHERE {waiting} AND owner_key > owners.owner_key
        ORDER BY owner_key LIMIT 1
    ) AS later
    WHERE owners.seen < %(limit)s
)
SELECT owner_key, NULL::bigint FROM owners
"""

# With `oldest`: the oldest waiting rows too, in the same statement, for the deal of one owner.
# Only then: the count is a one-time filter, and with several owners the scan does not run.
_AND_OLDEST = """
UNION ALL (
    SELECT owner_key, id FROM {table}
    WHERE {waiting} AND (SELECT count(*) FROM owners) <= 1
    ORDER BY id LIMIT %(limit)s
)
"""

# Each owner's share is read off the partial index on (owner_key, id), or (subscriber, owner_key,
# id): the owner is matched as a range of one (>= and <=), not with =, because with = the
# planner takes the owner for a constant, sees the primary key's order as good enough, and walks
# it filtering on the owner (tens of thousands of a burst's rows to find a small owner's few:
# 10 ms and more a deal, measured). The share is a number in the statement, not a subquery, so
# the planner sees how few rows each scan needs.
_DEALT = """
SELECT id, owner_key FROM (
    SELECT theirs.id, theirs.owner_key
    FROM unnest(%(owners)s::text[]) AS owners(owner_key) CROSS JOIN LATERAL (
        SELECT id, owner_key FROM {table}
        WHERE {waiting} AND owner_key >= owners.owner_key AND owner_key <= owners.owner_key
        ORDER BY owner_key, id
        LIMIT %(share)s
    ) AS theirs
  UNION
    (SELECT id, owner_key FROM {table} WHERE {waiting} ORDER BY id LIMIT %(limit)s)
) AS candidates
ORDER BY row_number() OVER (PARTITION BY owner_key ORDER BY id), id
LIMIT %(limit)s
"""


def enabled() -> bool:
    return bool(conf.get("FAIR_SHARE"))


def owner_of(payload: Mapping[str, Any]) -> str:
    """The owner key an event with this payload is served under; "" (one shared turn) if none."""
    value = payload.get(conf.get("OWNER_KEY"))
    return "" if value is None else str(value)[:64]


def dealt(kind: str, limit: int, *, oldest: bool = False, **params: Any) -> list[tuple[int, str]] | None:
    """Up to `limit` waiting `kind` rows ("events", or "deliveries" of `subscriber`) as (id,
    owner key), in turns across owners. Unlocked: the caller claims them with SKIP LOCKED.

    When at most one owner has anything waiting, oldest first is the same deal: None, for a
    caller whose own oldest-first claim (one statement, the relay's) is cheaper than dealing;
    with `oldest`, those rows, read with the owners (a worker reads before it claims, so this
    spares its message a statement)."""
    if limit <= 0:
        return []
    table, waiting = _WAITING[kind]
    owners_sql = _OWNERS + (_AND_OLDEST if oldest else "")
    with connection.cursor() as cursor:
        cursor.execute(owners_sql.format(table=table, waiting=waiting), {**params, "limit": limit})
        rows = cursor.fetchall()
        owners = [owner for owner, row_id in rows if row_id is None]
        if len(owners) <= 1:
            # Sorted here: UNION ALL promises no order of its own.
            return sorted((row_id, owner) for owner, row_id in rows if row_id is not None) if oldest else None
        cursor.execute(
            _DEALT.format(table=table, waiting=waiting),
            {**params, "owners": owners, "share": -(-limit // len(owners)), "limit": limit},
        )
        return [(row_id, owner) for row_id, owner in cursor.fetchall()]


@dataclass(frozen=True)
class Plan:
    """How a worker runs what it was dealt: `first` committed on its own, then `rest` (one owner's)."""

    first: list[int]
    rest: list[int]


def plan(taken: Sequence[tuple[int, str]]) -> Plan:
    """Fresh before backlog: the deliveries of every owner but the one with the most (a burst),
    committed on their own, then the burst's.

    A user who just completed a task is then done after a batch of a few, not after the hundred
    another owner's burst put beside it; and that first batch touches only the light owners'
    data (a batch's fixed costs, such as recomputing a project, grow with the burst's). A batch
    of one owner's work is all `rest`."""
    per_owner = Counter(owner for _, owner in taken)
    if len(per_owner) < 2:
        return Plan([], [i for i, _ in taken])
    heavy = per_owner.most_common(1)[0][0]
    return Plan(
        first=sorted(i for i, owner in taken if owner != heavy),
        rest=sorted(i for i, owner in taken if owner == heavy),
    )
