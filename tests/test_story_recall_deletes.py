"""A task deleted while another task's story recalls it: memory may still hold its vector for a
moment (its own delivery has not run), and the story may already have forgotten it. Neither a
search nor a segment written in that moment brings it back."""

from __future__ import annotations

from typing import Any

import pytest

from outbox.models import OutboxEvent
from tasks_app import services
from tasks_app.models import Task
from workers.memory import recall
from workers.models import MemoryEntry, StorySegment
from workers.story import handler

from .conftest import deliver
from .factories import TaskFactory
from .test_story_batch import between_prepare_and_claim, complete, remember, run

pytestmark = pytest.mark.django_db


def delete_before_memory_forgets(task: Task, story_forgets: bool = True) -> None:
    """The user deletes the task (and the story forgets it); memory's delivery has not run yet."""
    services.delete_task(Task.objects.get(pk=task.pk))
    if story_forgets:
        [deleted] = OutboxEvent.objects.filter(type="task.deleted", aggregate_id=str(task.pk))
        assert deliver("story", deleted) == {"succeeded": 1}
    assert MemoryEntry.objects.filter(task_id=task.pk).exists()  # the vector is still there


@pytest.fixture
def earlier(user: Any) -> Task:
    task = TaskFactory(owner=user, project=None, title="Sourdough loaf", description="Bake bread")
    remember(task)
    return task


def test_search_and_recall_leave_out_a_task_deleted_before_memory_forgot_it(user, api, earlier) -> None:
    later = TaskFactory(owner=user, project=None, title="Rye loaf", description="Bake bread again")
    complete(later)
    assert [r["task"] for r in recall.related_tasks(later, 3)] == [str(earlier.pk)]
    assert api.get("/api/memory/search/", {"q": "bread"}).json()["results"]
    delete_before_memory_forgets(earlier)
    assert recall.related_tasks(later, 3) == []
    assert recall.related_tasks_many([later], 3) == {later.pk: []}
    assert api.get("/api/memory/search/", {"q": "bread"}).json() == {"results": []}


def test_a_batch_draft_whose_recall_was_deleted_meanwhile_is_written_again_without_it(
    user, earlier, monkeypatch
) -> None:
    later = TaskFactory(owner=user, project=None, title="Rye loaf", description="Bake bread again")
    event = complete(later)
    # Mid-batch, the delete alone (its story delivery, run here, would be a delivery inside one).
    between_prepare_and_claim(monkeypatch, lambda: delete_before_memory_forgets(earlier, story_forgets=False))
    assert run([event]) == {"succeeded": 1}
    segment = StorySegment.objects.get(subject_id=later.pk)
    assert segment.recalled == [] and "Sourdough" not in segment.text


def test_a_draft_whose_recall_was_deleted_before_the_lock_is_written_again_without_it(
    user, earlier, monkeypatch
) -> None:
    """The one-by-one path: written unlocked, then recorded under the lock."""
    later = TaskFactory(owner=user, project=None, title="Rye loaf", description="Bake bread again")
    event = complete(later)
    real_task = handler._task

    def delete_then_lock(task_id: str, lock: bool = False, recalled: Any = ()) -> Task | None:
        if lock and Task.objects.filter(pk=earlier.pk).exists():
            assert [r["task"] for r in recalled] == [str(earlier.pk)]  # the draft recalled it
            delete_before_memory_forgets(earlier)
        return real_task(task_id, lock=lock, recalled=recalled)

    monkeypatch.setattr(handler, "_task", delete_then_lock)
    handler.compose_task_segment(str(later.pk), event.pk)
    segment = StorySegment.objects.get(subject_id=later.pk)
    assert segment.recalled == [] and "Sourdough" not in segment.text
