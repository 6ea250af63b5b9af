"""Recall: the query side of memory, for the story (related past tasks) and the API (search).

Only a store that is down (`StoreUnavailable`) makes memory "unavailable": the story is then
told without recalled tasks. Our own database being away is not that: it is raised, and the
story's delivery is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tasks_app.models import Task

from . import embedding, fresh
from .items import memory_text
from .stores import Hit, SearchQuery, StoreUnavailable, get_store


class MemoryUnavailable(Exception):
    """Semantic memory cannot answer now; the story is composed without recalled tasks."""


def as_dict(hit: Hit) -> dict[str, Any]:
    """A hit as the story records it and the API answers it."""
    return {"task": hit.task_id, "title": hit.title, "score": hit.score}


def still_there(hits: Sequence[Hit]) -> list[Hit]:
    """The hits whose task still exists, in their order (one query).

    Between a task's delete and its memory delivery the store still holds its vector: a search
    in that moment must not bring the deleted task back, in the API's answer or in a story
    segment written after the story subscriber already forgot it.
    """
    if not hits:
        return []
    live = {
        str(pk) for pk in Task.objects.filter(pk__in=[h.task_id for h in hits]).values_list("pk", flat=True)
    }
    return [h for h in hits if h.task_id in live]


def search(owner_id: int, query: str, k: int) -> list[Hit]:
    vector = embedding.embed([query])[0]
    return still_there(get_store().search(owner_id, vector, k))


def related_tasks(task: Task, k: int) -> list[dict[str, Any]]:
    """The owner's tasks completed before `task` and nearest to it in meaning (for the story composer)."""
    try:
        store = get_store()
        vector = store.vector_of(task.owner_id, str(task.pk))
        if vector is None:  # the story may run before memory has indexed this task
            vector = fresh.embed_tasks([str(task.pk)], [memory_text(task)])[0]
        hits = store.search(task.owner_id, vector, k, exclude=str(task.pk), before=task.completed_at)
    except StoreUnavailable as exc:
        # Only a store that is down. Our own database being away (an OperationalError) is
        # not caught: the story is retried, not written without its memories.
        raise MemoryUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return [as_dict(h) for h in still_there(hits)]


def related_tasks_many(tasks: Sequence[Task], k: int) -> dict[Any, list[dict[str, Any]]]:
    """related_tasks() for many tasks at once, by task pk: the stored vectors in one read, the
    ones memory has not indexed yet embedded in one model call, and one batch search (the
    pgvector store: one statement). A store without the batch methods is asked task by task.

    The tasks come with their project and media (their text may be embedded). Raises
    MemoryUnavailable, for all of them, when the store is down.
    """
    if not tasks:
        return {}
    try:
        store = get_store()
        keys = [(t.owner_id, str(t.pk)) for t in tasks]
        if hasattr(store, "vector_of_many"):
            vectors = store.vector_of_many(keys)
        else:
            found = {task_id: store.vector_of(owner_id, task_id) for owner_id, task_id in keys}
            vectors = {task_id: v for task_id, v in found.items() if v is not None}
        unindexed = [t for t in tasks if str(t.pk) not in vectors]
        if unindexed:  # the story may run before memory has indexed these tasks: embed them once
            ids = [str(t.pk) for t in unindexed]
            embedded = fresh.embed_tasks(ids, [memory_text(t) for t in unindexed])
            vectors.update(zip(ids, embedded, strict=True))
        queries = [SearchQuery(t.owner_id, vectors[str(t.pk)], str(t.pk), t.completed_at) for t in tasks]
        if hasattr(store, "search_many"):
            answers = store.search_many(queries, k)
        else:
            answers = [
                store.search(q.owner_id, q.vector, k, exclude=q.exclude, before=q.before) for q in queries
            ]
    except StoreUnavailable as exc:
        # As in related_tasks: only a store that is down; our own database going away is raised.
        raise MemoryUnavailable(f"{type(exc).__name__}: {exc}") from exc
    live = {h.task_id for h in still_there([h for hits in answers for h in hits])}
    return {
        t.pk: [as_dict(h) for h in hits if h.task_id in live] for t, hits in zip(tasks, answers, strict=True)
    }
