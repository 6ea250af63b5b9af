"""A completed task is embedded once, whichever of memory and the story runs first (`workers.memory.fresh`);
the kept vector serves only the text it came from, goes with the task, and the cache is never needed."""

import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from django.core.cache import cache

from outbox.models import OutboxEvent
from selfos.accounts.services import delete_account
from tasks_app import services
from tasks_app.events import TASK_DELETED
from tasks_app.models import Task
from workers.memory import embedding, fresh
from workers.memory.items import memory_text
from workers.models import MemoryEntry, StorySegment

from .conftest import deliver
from .factories import TaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The texts of each call to the model, which still answers."""
    calls: list[list[str]] = []
    real = embedding.embed

    def counted(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        calls.append(list(texts))
        return real(texts, batch_size)

    monkeypatch.setattr(embedding, "embed", counted)
    yield calls


@pytest.fixture
def task_1() -> str:
    """A task id of this test's own: kept vectors outlive a test in the cache."""
    return str(uuid.uuid4())


@pytest.fixture
def task_2() -> str:
    return str(uuid.uuid4())


def complete(task: Task) -> OutboxEvent:
    services.complete_task(task, by=task.owner)
    return OutboxEvent.objects.filter(aggregate_id=str(task.pk)).latest("id")


# "story" first is the case the kept vector is for; "memory" first, where the story reads the
# stored one, is the control.
@pytest.mark.parametrize("first", ["story", "memory"])
def test_memory_and_the_story_embed_a_completed_task_once(
    user: Any, model_calls: list[list[str]], first: str
) -> None:
    TaskFactory(owner=user, title="Ran the first half marathon", project=None)
    remembered = TaskFactory(owner=user, title="Ran 10 km in the park", project=None)
    event = complete(remembered)
    for subscriber in [first, *({"story", "memory"} - {first})]:
        assert deliver(subscriber, event) == {"succeeded": 1}

    text = memory_text(remembered)
    assert [t for call in model_calls for t in call].count(text) == 1
    stored = np.asarray(MemoryEntry.objects.get(task_id=remembered.pk).embedding, dtype=np.float32)
    assert np.allclose(stored, embedding.embed([text])[0], atol=1e-6)
    assert StorySegment.objects.filter(subject_id=remembered.pk).exists()


def test_a_kept_vector_serves_only_the_text_it_was_embedded_from(
    model_calls: list[list[str]], task_1: str
) -> None:
    first = fresh.embed_tasks([task_1], ["climb a mountain"])
    again = fresh.embed_tasks([task_1], ["climb a mountain"])
    edited = fresh.embed_tasks([task_1], ["file the tax return"])

    assert model_calls == [["climb a mountain"], ["file the tax return"]]
    assert np.array_equal(first, again)
    assert np.allclose(edited, embedding.embed(["file the tax return"]), atol=1e-6)


def test_a_kept_value_that_is_not_a_whole_vector_is_not_used(
    model_calls: list[list[str]], task_1: str
) -> None:
    digest = fresh._digest("climb a mountain")
    for broken in (digest, digest + b"\0" * 10, "not bytes at all"):
        cache.set(fresh._key(task_1), broken, timeout=5)
        (vector,) = fresh.embed_tasks([task_1], ["climb a mountain"])
        assert vector.shape == (384,)
    assert len(model_calls) == 3


def test_the_kept_digest_is_keyed_so_a_title_cannot_be_guessed_from_it(task_1: str) -> None:
    fresh.embed_tasks([task_1], ["climb a mountain"])
    value = cache.get(fresh._key(task_1))
    assert isinstance(value, bytes) and len(value) == 32 + 4 * 384
    assert value[:32] != hashlib.sha256(b"climb a mountain").digest()


def test_without_the_cache_the_model_answers(
    settings: Any, model_calls: list[list[str]], task_1: str, task_2: str
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "selfos.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    vectors = fresh.embed_tasks([task_1, task_2], ["climb a mountain", "bake bread"])
    fresh.forget([task_1])  # logged, not raised

    assert model_calls == [["climb a mountain", "bake bread"]]
    assert np.allclose(vectors, embedding.embed(["climb a mountain", "bake bread"]), atol=1e-6)


def kept(task: Task) -> object:
    return cache.get(fresh._key(str(task.pk)))


def test_memory_forgets_the_kept_vector_of_a_deleted_task(user: Any) -> None:
    task = TaskFactory(owner=user, title="Ran 10 km in the park", project=None)
    assert deliver("story", complete(task)) == {"succeeded": 1}  # embeds it, and keeps it
    assert kept(task) is not None

    services.delete_task(task)
    deleted = OutboxEvent.objects.get(type=TASK_DELETED)
    assert deliver("memory", deleted) == {"succeeded": 1}

    assert kept(task) is None


def test_an_account_deletion_forgets_the_vectors_kept_of_its_tasks(
    user: Any, other_user: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    mine = TaskFactory(owner=user, title="Ran 10 km in the park", project=None)
    theirs = TaskFactory(owner=other_user, title="Ran 5 km by the river", project=None)
    for task in (mine, theirs):
        assert deliver("story", complete(task)) == {"succeeded": 1}
    assert kept(mine) is not None

    with django_capture_on_commit_callbacks(execute=True):
        delete_account(user)

    assert kept(mine) is None
    assert kept(theirs) is not None
