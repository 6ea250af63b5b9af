"""What memory stores for a task: the text embedded, and the items built from tasks (the
subscriber and `memory reindex` both build them here)."""

from __future__ import annotations

from collections.abc import Sequence

from tasks_app.models import Task

from . import embedding, fresh
from .stores import MemoryItem


def memory_text(task: Task) -> str:
    """What is embedded: the title, description, media captions and the project's title."""
    parts = [task.title, task.description]
    parts += [m.caption for m in task.media.all() if m.caption]
    if task.project:
        parts.append(f"Project: {task.project.title}")
    return "\n".join(p for p in parts if p)


def items_for(tasks: Sequence[Task], *, share: bool = False) -> list[MemoryItem]:
    """One item per completed task, embedded in one model call (tasks come with project and media).
    `share`: use and keep the vectors the story may have embedded already (`fresh`): the
    subscriber's, not a reindex's, whose thousands of vectors nobody else is waiting for."""
    texts = [memory_text(t) for t in tasks]
    vectors = fresh.embed_tasks([str(t.pk) for t in tasks], texts) if share else embedding.embed(texts)
    return [
        MemoryItem(str(t.pk), t.owner_id, t.title, text, v, completed_at=t.completed_at)
        for t, text, v in zip(tasks, texts, vectors, strict=True)
    ]
