"""A task's segment written before it is recorded: the text, and what it was written from.

Both the one-by-one handler and the batch write drafts with no lock held (an LLM writer takes
seconds), then record them under the delivery's transaction if the task still reads the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks_app.models import Task

from ..memory.recall import MemoryUnavailable
from .context import task_context
from .writers import StoryContext, Writer


@dataclass(frozen=True)
class Draft:
    """A task's segment, written before the task is locked."""

    context: StoryContext  # what the text was written from
    text: str
    writer: str
    metadata: dict[str, Any]

    def still_fits(self, task: Task) -> bool:
        """The task, locked now, still reads as the one the text was written about (its title,
        description, project, goal and the project's figures: everything the writer was told)."""
        return task_context(task, self.context.media, self.context.recalled) == self.context


def memory_metadata(recalled: list[dict[str, Any]] | MemoryUnavailable) -> dict[str, Any]:
    """What a segment's metadata says of memory: "ok", or why it was told without recalls."""
    if isinstance(recalled, MemoryUnavailable):
        return {"memory": f"unavailable: {recalled}"}
    return {"memory": "ok"}


def write(writer: Writer, context: StoryContext, metadata: dict[str, Any]) -> Draft:
    return Draft(context, writer.write(context), writer.name, metadata)
