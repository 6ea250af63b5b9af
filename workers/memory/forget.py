"""Forgetting a user's memories: their pgvector rows in the caller's transaction, their
Weaviate tenant after it commits (an external store cannot roll back with PostgreSQL)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction

from . import fresh
from .models import MemoryEntry
from .stores import get_store

logger = logging.getLogger(__name__)


def forget_owner(owner_id: int, task_ids: Sequence[str] = ()) -> int:
    """Delete the user's memory rows now; drop their store tenant, and the vectors kept of
    `task_ids` (their tasks, `fresh`), once the transaction commits.

    Returns how many pgvector rows went. The tenant is dropped after the commit, so a rolled-back
    account deletion keeps its memories; if that drop fails it is logged, not raised (the account
    is gone already), and `manage.py memory forget-user ID` retries it.
    """
    deleted, _ = MemoryEntry.objects.filter(owner_id=owner_id).delete()
    transaction.on_commit(lambda: drop_tenant_or_log(owner_id))
    if task_ids:
        transaction.on_commit(lambda: fresh.forget(task_ids))
    return deleted


def drop_tenant(owner_id: int) -> bool:
    """Drop the user's tenant if the configured store keeps one per user; False if it does not.

    Idempotent. Raises the store's error (StoreUnavailable for Weaviate) when it is away.
    """
    store = get_store()
    drop = getattr(store, "drop_tenant", None)
    if drop is None:
        return False  # pgvector: the rows went with the account's transaction
    drop(owner_id)
    return True


def drop_tenant_or_log(owner_id: int) -> None:
    try:
        drop_tenant(owner_id)
    except Exception:  # after the commit nothing can roll back: log it, and say how to retry
        logger.exception(
            "memory: could not drop the store tenant of deleted user %s; "
            "run `manage.py memory forget-user %s` when the store is back",
            owner_id,
            owner_id,
        )
