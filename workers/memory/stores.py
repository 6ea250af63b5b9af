"""Vector stores for semantic memory, behind one interface; MEMORY_STORE picks one.

- `pgvector` (default): the `workers_memoryentry` table in the same PostgreSQL, with
  an HNSW cosine index. A user's memories are a small slice of everyone's, and
  pgvector filters *after* the index scan, so a plain HNSW query for a user with few
  memories can come back short. Search therefore scans exactly (owner index, then
  distance sort; never the whole table: `_EXACT_SCAN`) when the owner has at most
  EXACT_SCAN_MAX memories, and otherwise uses pgvector 0.8's iterative index scan,
  which keeps walking the graph until it has k rows that pass the owner filter. Either
  way the planner is left as the search found it (`_settings_undone`).
- `weaviate`: see `workers.weaviate_store`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Protocol

import numpy as np
from django.db import connection, transaction
from django.db.models import QuerySet
from pgvector import Vector
from pgvector.django import CosineDistance

from ..models import MemoryEntry

# An exact scan costs about 3 ms per 1,000 rows here; above this many, the HNSW walk wins (`make bench`).
EXACT_SCAN_MAX = 2000
# HNSW candidates per search (pgvector's default is 40); `make bench` sweeps it: more
# candidates buy recall with latency.
EF_SEARCH = 100


# The exact scan's plan: no index scan (the planner would walk the HNSW graph) and no sequential
# scan either, so only the owner's index is left. With the owner a LATERAL parameter, as in
# `search_many`, the planner cannot tell a light owner from a heavy one, and it read the whole
# table for each query: distances for everyone's memories to find a user's few (EXPLAIN ANALYZE
# with 2,194 rows, 194 of them the user's: 2.4 ms, against 0.3 ms off the owner index; the
# sequential scan grows with everyone's memories, so during another user's burst, with theirs).
_EXACT_SCAN = "SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = off"


@contextmanager
def _settings_undone() -> Iterator[None]:
    """A savepoint for a search, rolled back once the search has read its rows, so that the
    planner settings it made go with it.

    SET LOCAL lasts until the end of the transaction, and a savepoint's RELEASE keeps it: the
    story's batch searches in the middle of its transaction, and every statement after the
    search ran without index scans (its writes' foreign-key checks among them, whose plans a
    connection keeps). A search writes nothing, so rolling its savepoint back loses nothing.
    """
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


class StoreUnavailable(Exception):
    """The vector store cannot answer now (Weaviate down, a network error): stories are then
    told without recalled memories. Our own database being away is not this: it is retried."""


@dataclass(frozen=True)
class MemoryItem:
    task_id: str
    owner_id: int
    title: str
    text: str
    vector: np.ndarray
    completed_at: datetime | None = None


@dataclass(frozen=True)
class Hit:
    task_id: str
    title: str
    score: float  # cosine similarity, 1 is identical


@dataclass(frozen=True)
class SearchQuery:
    """One search of a batch (`search_many`): the owner's k nearest to `vector`, as `search` takes them."""

    owner_id: int
    vector: np.ndarray
    exclude: str | None = None
    before: datetime | None = None


class VectorStore(Protocol):
    """What memory needs of a store. The two `*_many` methods answer a batch (the story's) in a
    constant number of round trips; a store without them is asked once per task (see `recall`)."""

    name: str

    def upsert(self, items: Sequence[MemoryItem]) -> None: ...

    def delete(self, owner_id: int, task_ids: Sequence[str]) -> None: ...

    def search(
        self,
        owner_id: int,
        vector: np.ndarray,
        k: int,
        exclude: str | None = None,
        before: datetime | None = None,
    ) -> list[Hit]: ...

    def vector_of(self, owner_id: int, task_id: str) -> np.ndarray | None: ...

    def vector_of_many(self, keys: Sequence[tuple[int, str]]) -> dict[str, np.ndarray]:
        """The stored vectors of these (owner, task) pairs, by task id; absent when not stored."""
        ...

    def search_many(self, queries: Sequence[SearchQuery], k: int) -> list[list[Hit]]:
        """`search` for each query, answers in the queries' order."""
        ...


class PgVectorStore:
    name = "pgvector"

    def upsert(self, items: Sequence[MemoryItem]) -> None:
        MemoryEntry.objects.bulk_create(
            [
                MemoryEntry(
                    task_id=i.task_id,
                    owner_id=i.owner_id,
                    title=i.title[:200],
                    text=i.text,
                    embedding=i.vector,
                    completed_at=i.completed_at,
                )
                for i in items
            ],
            update_conflicts=True,
            unique_fields=["task_id"],
            update_fields=["owner", "title", "text", "embedding", "completed_at", "updated_at"],
        )

    def delete(self, owner_id: int, task_ids: Sequence[str]) -> None:
        MemoryEntry.objects.filter(owner_id=owner_id, task_id__in=list(task_ids)).delete()

    def search(
        self,
        owner_id: int,
        vector: np.ndarray,
        k: int,
        exclude: str | None = None,
        before: datetime | None = None,
        ef_search: int | None = None,
    ) -> list[Hit]:
        with _settings_undone():
            nearest = self.nearest(owner_id, vector, k, exclude, before, ef_search)
            rows = list(nearest.values_list("task_id", "title", "distance"))
        return [Hit(task_id=str(t), title=title, score=round(1 - float(d), 4)) for t, title, d in rows]

    def nearest(
        self,
        owner_id: int,
        vector: np.ndarray,
        k: int,
        exclude: str | None = None,
        before: datetime | None = None,
        ef_search: int | None = None,
    ) -> QuerySet[MemoryEntry]:
        """The owner's k nearest rows; sets the scan strategy for the rest of the current transaction
        (`search` puts it back). `ef_search` (HNSW candidates) defaults to EF_SEARCH; the
        benchmark sweeps it."""
        owned = MemoryEntry.objects.filter(owner_id=owner_id)
        with connection.cursor() as cursor:
            # "More than EXACT_SCAN_MAX rows?" reads one row past the limit, not all of them.
            if not owned.order_by()[EXACT_SCAN_MAX : EXACT_SCAN_MAX + 1].exists():
                # Exact: no HNSW walk at all; the owner's rows are few enough to sort.
                cursor.execute(_EXACT_SCAN)
            else:
                cursor.execute("SET LOCAL hnsw.iterative_scan = strict_order")
                ef = EF_SEARCH if ef_search is None else ef_search
                cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(max(ef, 4 * k))])
        qs = owned.exclude(task_id=exclude) if exclude else owned
        if before:
            qs = qs.filter(completed_at__lt=before)
        return qs.annotate(distance=CosineDistance("embedding", vector)).order_by("distance")[:k]

    def vector_of(self, owner_id: int, task_id: str) -> np.ndarray | None:
        value = (
            MemoryEntry.objects.filter(owner_id=owner_id, task_id=task_id)
            .values_list("embedding", flat=True)
            .first()
        )
        return None if value is None else np.asarray(value, dtype=np.float32)

    def vector_of_many(self, keys: Sequence[tuple[int, str]]) -> dict[str, np.ndarray]:
        if not keys:
            return {}
        owners = dict((task_id, owner_id) for owner_id, task_id in keys)
        rows = MemoryEntry.objects.filter(task_id__in=list(owners)).values_list(
            "task_id", "owner_id", "embedding"
        )
        # The owner too, as vector_of asks: a task id is never another owner's memory.
        return {
            str(t): np.asarray(v, dtype=np.float32) for t, owner, v in rows if owners.get(str(t)) == owner
        }

    def search_many(self, queries: Sequence[SearchQuery], k: int) -> list[list[Hit]]:
        """All the queries in one statement per scan strategy: a LATERAL join of the batch's
        vectors to each one's k nearest, with the strategy `nearest` picks per owner (an exact
        scan for owners with few memories, the iterative HNSW walk for the others)."""
        if not queries:
            return []
        answers: list[list[Hit]] = [[] for _ in queries]
        with _settings_undone(), connection.cursor() as cursor:
            owners = sorted({q.owner_id for q in queries})
            cursor.execute(_LARGE_OWNERS_SQL, [owners, EXACT_SCAN_MAX])
            large = {owner for (owner,) in cursor.fetchall()}
            for exact in (True, False):
                group = [i for i, q in enumerate(queries) if (q.owner_id not in large) == exact]
                if not group:
                    continue
                if exact:
                    cursor.execute(_EXACT_SCAN)
                else:
                    cursor.execute(
                        "SET LOCAL enable_indexscan = on; SET LOCAL enable_seqscan = on;"
                        " SET LOCAL hnsw.iterative_scan = strict_order"
                    )
                    cursor.execute(
                        "SELECT set_config('hnsw.ef_search', %s, true)", [str(max(EF_SEARCH, 4 * k))]
                    )
                cursor.execute(
                    _SEARCH_MANY_SQL,
                    [
                        group,
                        [queries[i].owner_id for i in group],
                        [queries[i].exclude for i in group],
                        [queries[i].before for i in group],
                        [_vector_text(queries[i].vector) for i in group],
                        k,
                    ],
                )
                for i, task_id, title, distance in cursor.fetchall():
                    answers[i].append(
                        Hit(task_id=str(task_id), title=title, score=round(1 - float(distance), 4))
                    )
        return answers


# Owners with more than EXACT_SCAN_MAX memories: one row past the limit, as `nearest` asks it.
_LARGE_OWNERS_SQL = f"""SELECT o FROM unnest(%s::bigint[]) AS o
WHERE EXISTS (SELECT 1 FROM {MemoryEntry._meta.db_table} e WHERE e.owner_id = o OFFSET %s LIMIT 1)
"""  # noqa: S608 - the table name is ours

# Each query's k nearest among its owner's memories: `nearest`'s filters, one LATERAL per query.
# The query vectors are parsed once, as an array (`::vector[]`): a `q.vec::vector` inside the
# LATERAL would parse 384 floats of text again for every row the scan compares.
_SEARCH_MANY_SQL = f"""SELECT q.i, m.task_id, m.title, m.distance
FROM unnest(%s::int[], %s::bigint[], %s::uuid[], %s::timestamptz[], %s::text[]::vector[])
    AS q(i, owner_id, exclude, before, vec)
CROSS JOIN LATERAL (
    SELECT e.task_id, e.title, e.embedding <=> q.vec AS distance
    FROM {MemoryEntry._meta.db_table} e
    WHERE e.owner_id = q.owner_id
      AND (q.exclude IS NULL OR e.task_id <> q.exclude)
      AND (q.before IS NULL OR e.completed_at < q.before)
    ORDER BY e.embedding <=> q.vec
    LIMIT %s
) AS m
ORDER BY q.i, m.distance
"""  # noqa: S608 - the table name is ours


def _vector_text(vector: np.ndarray) -> str:
    """pgvector's text form, as the Django field sends a query vector: both paths compare the same floats."""
    return Vector(vector).to_text()


@cache
def get_store() -> VectorStore:
    """The store MEMORY_STORE names (see workers.pluggables); weaviate is imported only for it."""
    from ..pluggables import build

    return build("MEMORY_STORE")
