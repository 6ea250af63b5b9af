"""Vectors just embedded, kept for a moment so that memory and the story embed a task once.

A completion reaches memory and the story at about the same time, and both need the task's
vector: memory to store it, the story to recall the task's nearest past tasks. The story reads
it from the store when memory has committed it, and otherwise embeds the task itself. Near
capacity the two run at about the same moment (at 24 completions/s on a 2-core VM, memory
started a completion's batch after 93 ms and committed it about 100 ms later, while the story
started after 172 ms), so many completions were embedded twice, and the model is the largest
CPU cost of both (a story batch of 10 that embedded, under cProfile: 128 ms of CPU, 34 of
them the model's).

So whoever embeds a task's text keeps the vector in the cache for FRESH_VECTOR_SECONDS, under
the task's id with a keyed digest of the text, and the other uses it instead of the model when
the digest matches: a vector is a function of the text alone, so one read while the task says
the same is the vector the model would give. Nothing depends on the cache: a miss, an
expired key or an unreachable cache means the model runs, as before.

The vector is derived from the user's text, so it goes with the task: memory forgets it
when it removes the task's memory (the task deleted or reopened), and an account's deletion
forgets those of all its tasks once it commits. A vector written after that by a story
that had read the task just before its deletion expires within FRESH_VECTOR_SECONDS.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence

import numpy as np
from django.conf import settings
from django.core.cache import cache

from . import embedding
from .models import EMBEDDING_DIMENSIONS

logger = logging.getLogger(__name__)

# Long enough to bridge memory's and the story's queues of one completion, even in a burst;
# short, because the vector is the user's and the cache is not where it is kept.
FRESH_VECTOR_SECONDS = 120

_DIGEST = 32  # bytes of the digest before the vector's float32 bytes
_KEPT = _DIGEST + 4 * EMBEDDING_DIMENSIONS


def _key(task_id: str) -> str:
    return f"memory:fresh-vector:{task_id}"


def _digest(text: str) -> bytes:
    """Keyed (HMAC with the secret key): a plain hash of a short title could be reversed by hashing
    guesses. The runtime is in the key too, so a vector serves only the encoder that made it."""
    key = f"{settings.SECRET_KEY}|memory fresh vector|{settings.MEMORY_EMBEDDING_RUNTIME}".encode()
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def embed_tasks(task_ids: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """The tasks' vectors, one row per task: kept ones whose text is unchanged, the rest embedded
    in one model call and kept for the other subscriber."""
    digests = [_digest(text) for text in texts]
    kept = _read(task_ids)
    vectors: list[np.ndarray | None] = []
    for task_id, digest in zip(task_ids, digests, strict=True):
        value = kept.get(_key(task_id))
        if isinstance(value, bytes) and len(value) == _KEPT and hmac.compare_digest(value[:_DIGEST], digest):
            vectors.append(np.frombuffer(value, dtype=np.float32, offset=_DIGEST).copy())
        else:  # none kept, another text's, or not a whole vector
            vectors.append(None)
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        embedded = embedding.embed([texts[i] for i in missing])
        kept_now: dict[str, bytes] = {}
        for i, vector in zip(missing, embedded, strict=True):
            vectors[i] = vector
            kept_now[task_ids[i]] = digests[i] + np.asarray(vector, dtype=np.float32).tobytes()
        _keep(kept_now)
    return np.stack(vectors) if vectors else np.empty((0, 0), dtype=np.float32)


def forget(task_ids: Iterable[str]) -> None:
    """Drop the kept vectors of these tasks (deleted, reopened, or their account gone)."""
    keys = [_key(str(t)) for t in task_ids]
    if not keys:
        return
    try:
        cache.delete_many(keys)
    except Exception:  # it expires within FRESH_VECTOR_SECONDS anyway
        logger.warning("memory: could not drop %d kept vectors; they expire anyway", len(keys), exc_info=True)


def _read(task_ids: Sequence[str]) -> dict[str, object]:
    try:
        return cache.get_many([_key(t) for t in task_ids])
    except Exception:
        logger.warning("memory: cannot read kept vectors; embedding them", exc_info=True)
        return {}


def _keep(values: dict[str, bytes]) -> None:
    try:
        cache.set_many({_key(t): v for t, v in values.items()}, timeout=FRESH_VECTOR_SECONDS)
    except Exception:
        logger.warning("memory: cannot keep %d vectors for the other subscriber", len(values), exc_info=True)
