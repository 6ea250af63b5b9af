"""The search suite: pgvector search p50/p95 and recall@10, over clustered 384-d vectors
(10,000 quick, 100,000 full) loaded with COPY, for a large owner (half of them; HNSW,
swept over ef_search), a medium one (~5 %) and a small one (1 %, the exact scan).

Baseline: an exact search in numpy, for recall; the latency targets are absolute.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from workers.memory import stores
from workers.memory.stores import PgVectorStore

from .common import Row, percentile, reset

QUERIES = 60
K = 10


def clustered_vectors(n: int, noise_seed: int, dims: int = 384, clusters: int = 200) -> np.ndarray:
    """Vectors shaped like sentence embeddings: clusters on the unit sphere (topics), same
    centres for every call, so queries look like the memories they search."""
    centres = np.random.default_rng(3).normal(size=(clusters, dims)).astype(np.float32)
    rng = np.random.default_rng(noise_seed)
    vectors = centres[rng.integers(0, clusters, n)] + rng.normal(scale=0.6, size=(n, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def load(ids: list[uuid.UUID], owner_of: np.ndarray, vectors: np.ndarray) -> float:
    """COPY the vectors into the memory table (the HNSW index kept up as rows arrive); seconds."""
    started = time.perf_counter()
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY workers_memoryentry (task_id, owner_id, title, text, embedding, updated_at) FROM STDIN"
        ) as copy,
    ):
        now = timezone.now()
        for i in range(len(ids)):
            copy.write_row(
                (
                    ids[i],
                    int(owner_of[i]),
                    f"memory {i}",
                    "",
                    "[" + ",".join(f"{x:.6f}" for x in vectors[i]) + "]",
                    now,
                )
            )
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE workers_memoryentry")  # the planner must see the owners' sizes
    return seconds


class Searches:
    """One loaded corpus, searched as each owner with the same queries."""

    def __init__(self, n: int, ids: list[uuid.UUID], owner_of: np.ndarray, vectors: np.ndarray) -> None:
        self.n, self.ids, self.owner_of, self.vectors = n, ids, owner_of, vectors
        self.store = PgVectorStore()
        self.queries = clustered_vectors(QUERIES, noise_seed=99)

    def measure(self, owner: Any, ef_search: int | None) -> tuple[list[float], float, int]:
        """(seconds per search, mean recall@K against numpy's exact answer, the owner's size)."""
        mask = self.owner_of == owner.pk
        own_vectors, own_ids = self.vectors[mask], [self.ids[i] for i in np.flatnonzero(mask)]
        self.store.search(owner.pk, self.queries[0], K, ef_search=ef_search)  # warm the index pages
        timings, recalls = [], []
        for q in self.queries:
            started = time.perf_counter()
            hits = self.store.search(owner.pk, q, K, ef_search=ef_search)
            timings.append(time.perf_counter() - started)
            exact = {str(own_ids[i]) for i in np.argsort(-(own_vectors @ q))[:K]}
            recalls.append(len(exact & {h.task_id for h in hits}) / K)
        return timings, statistics.mean(recalls), int(mask.sum())

    def rows(
        self, name: str, owner: Any, detail: str = "", targets: bool = True, ef_search: int | None = None
    ) -> list[Row]:
        timings, recall, size = self.measure(owner, ef_search)
        path = "exact scan" if size <= stores.EXACT_SCAN_MAX else "iterative HNSW"
        label = f"{name} ({path}{detail})"
        p95 = percentile(timings, 95) * 1000
        return [
            Row(
                bench="memory",
                figure=f"search p50, {label}, {size:,} of {self.n:,}",
                value=percentile(timings, 50) * 1000,
                unit="ms",
            ),
            Row(
                bench="memory",
                figure=f"search p95, {label}",
                value=p95,
                unit="ms",
                target="<= 20 ms" if targets else None,
                met=p95 <= 20 if targets else None,
            ),
            Row(
                bench="memory",
                figure=f"recall@10 vs exact, {label}",
                value=recall,
                unit="",
                target=">= 0.95" if targets else None,
                met=recall >= 0.95 if targets else None,
            ),
        ]


def run(quick: bool) -> list[Row]:
    n = 10_000 if quick else 100_000
    reset()
    users = get_user_model()
    owners = [users.objects.get_or_create(username=f"bench-owner-{i}")[0] for i in range(11)]

    # Owner 0 has half of everything; owner 1 has 1 % (the exact path); nine others share the rest.
    def owner_for(i: int) -> int:
        if i % 2 == 0:
            return owners[0].pk
        if i % 100 == 1:
            return owners[1].pk
        return owners[2 + (i // 2) % 9].pk

    vectors = clustered_vectors(n, noise_seed=1)
    owner_of = np.array([owner_for(i) for i in range(n)])
    ids = [uuid.UUID(int=i + 1) for i in range(n)]
    rows = [
        Row(
            bench="memory",
            figure=f"loaded {n:,} vectors (COPY + HNSW upkeep)",
            value=load(ids, owner_of, vectors),
            unit="s",
        )
    ]
    searches = Searches(n, ids, owner_of, vectors)
    # The HNSW path at several ef_search values, passed per search (the module's default is
    # never reassigned); the shipped value carries the targets.
    shipped = stores.EF_SEARCH
    for ef in sorted({40, 64, shipped}):
        suffix = ", shipped" if ef == shipped else ""
        detail = f", ef_search {ef}{suffix}"
        rows += searches.rows("large owner", owners[0], detail, targets=ef == shipped, ef_search=ef)
    rows += searches.rows("medium owner", owners[2])
    rows += searches.rows("small owner", owners[1])
    reset()
    return rows
