"""The story's batch: a message's task.completed deliveries written set-based, with the same
segments as one by one, a constant number of queries, and the writer outside any transaction."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from outbox.api import Event, PermanentError, TransientError
from outbox.delivery import run_deliveries
from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Task
from workers.memory import recall
from workers.memory import stores as vectorstores
from workers.memory.stores import MemoryItem, SearchQuery, StoreUnavailable
from workers.memory.weaviate_store import WeaviateStore
from workers.models import StorySegment
from workers.story import batch, writers
from workers.story.handler import compose_story
from workers.story.writers import StoryContext, TemplateWriter

from .conftest import deliver
from .deliveries import dispatched
from .factories import MediaAttachmentFactory, ProjectFactory, TaskFactory, UserFactory
from .fake_weaviate import FakeWeaviate

pytestmark = pytest.mark.django_db


def complete(task: Task) -> OutboxEvent:
    services.complete_task(task, by=task.owner)
    return OutboxEvent.objects.filter(aggregate_id=str(task.pk), type="task.completed").latest("id")


def remember(task: Task) -> OutboxEvent:
    """Complete the task and let memory index it (the story then reuses its stored vector)."""
    event = complete(task)
    deliver("memory", event)
    return event


def run(events: list[OutboxEvent]) -> dict[str, int]:
    """One message carrying these events' story deliveries; its counts by outcome."""
    return run_deliveries("story", dispatched("story", events))


def segments() -> dict[str, dict[str, Any]]:
    """Every segment as the reader sees it, by subject; recall scores apart (compared approximately)."""
    found = {}
    for s in StorySegment.objects.all():
        found[str(s.subject_id)] = {
            "owner": s.owner_id,
            "kind": s.kind,
            "event_id": s.event_id,
            "title": s.title,
            "text": s.text,
            "media": s.media,
            "recalled": [(r["task"], r["title"]) for r in s.recalled],
            "scores": [r["score"] for r in s.recalled],
            "writer": s.writer,
            "metadata": s.metadata,
        }
    return found


def same_scores(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> bool:
    # A task memory has not indexed yet is embedded alone one by one, and with others in a batch:
    # the model's padding moves the last digits.
    return all(np.allclose(a[k].pop("scores"), b[k].pop("scores"), atol=2e-3) for k in a)


class CountingWriter(TemplateWriter):
    """The template writer, counting its calls by title; raises what `fail` says for a title."""

    name = "template"
    calls: list[str] = []
    fail: dict[str, list[Exception]] = {}
    down = False

    def write(self, context: StoryContext) -> str:
        CountingWriter.calls.append(context.title)
        if CountingWriter.down:
            raise TransientError("story writer answered 503")
        if planned := CountingWriter.fail.get(context.title):
            raise planned.pop(0)
        return super().write(context)


@pytest.fixture
def counting_writer(settings: Any) -> type[CountingWriter]:
    settings.STORY_WRITER = "tests.test_story_batch.CountingWriter"
    writers.get_writer.cache_clear()
    CountingWriter.calls, CountingWriter.fail, CountingWriter.down = [], {}, False
    return CountingWriter


@pytest.fixture
def world(user: Any) -> list[OutboxEvent]:
    """Two owners' completions: projects with estimates, media, earlier tasks memory holds, tasks
    it holds and tasks it has not indexed yet, a task reopened since, a task completed twice."""
    other = UserFactory()
    marathon = ProjectFactory(owner=user, title="Marathon base")
    TaskFactory(owner=user, project=marathon, estimate=5)  # still open
    remember(TaskFactory(owner=user, project=None, title="Run 10 km along the river"))
    remember(TaskFactory(owner=user, project=None, title="Hill repeats"))
    remember(TaskFactory(owner=other, project=None, title="Bake rye bread"))
    long_run = TaskFactory(owner=user, project=marathon, title="Long run", estimate=3)
    MediaAttachmentFactory(task=long_run, kind="image", caption="sunrise over the bridge")
    MediaAttachmentFactory(task=long_run, kind="note", url="", caption="legs felt strong")
    tempo = TaskFactory(owner=user, project=marathon, title="Tempo run by the river", estimate=2)
    stretch = TaskFactory(owner=user, project=None, title="Stretch after the run")
    bread = TaskFactory(owner=other, title="Bake sourdough bread", description="feed the starter")
    reopened = TaskFactory(owner=other, title="Renew passport")
    twice = TaskFactory(owner=other, title="Fix the bicycle brakes")
    events = [remember(long_run), complete(tempo), remember(stretch), complete(bread), complete(reopened)]
    events.append(complete(twice))
    services.reopen_task(reopened)
    services.reopen_task(twice)
    events.append(complete(twice))
    return events


def test_a_batch_writes_the_segments_one_by_one_would(world: list[OutboxEvent]) -> None:
    for event in world:
        with transaction.atomic():
            compose_story(Event.of(event))
    one_by_one = segments()
    StorySegment.objects.all().delete()

    assert run(world) == {"succeeded": len(world)}
    batched = segments()
    assert same_scores(batched, one_by_one)
    assert batched == one_by_one
    assert len(batched) == 5  # the reopened task has none, the one completed twice has one
    long_run = next(s for s in batched.values() if s["title"] == "Long run")
    assert "Marathon base" in long_run["text"] and "sunrise over the bridge" in long_run["text"]
    assert long_run["metadata"]["memory"] == "ok" and long_run["recalled"]


def test_queries_per_batch_do_not_grow_with_the_batch(user: Any) -> None:
    other = UserFactory()

    def completions(n: int) -> list[OutboxEvent]:
        events = []
        for i in range(n):
            task = TaskFactory(owner=(user, other)[i % 2], project=ProjectFactory(owner=(user, other)[i % 2]))
            MediaAttachmentFactory(task=task)
            events.append(remember(task) if i % 2 else complete(task))  # half not indexed yet
        return events

    small, large = completions(5), completions(40)
    counted = []
    for events in (small, large):
        ids = dispatched("story", events)
        with CaptureQueriesContext(connection) as queries:
            assert run_deliveries("story", ids)["succeeded"] == len(events)
        counted.append(len(queries.captured_queries))
    assert counted[0] == counted[1], counted
    assert counted[1] < 40  # one by one, the story costs about 20 queries per event


def test_a_bad_event_fails_alone_and_the_others_are_written(user: Any) -> None:
    good = [complete(TaskFactory(owner=user)) for _ in range(3)]
    bad = OutboxEvent.objects.create(
        type="task.completed", version=1, aggregate_type="tasks_app.task", aggregate_id="x", payload={}
    )
    assert run([*good, bad]) == {"succeeded": 3, "dead": 1}
    assert StorySegment.objects.count() == 3
    delivery = Delivery.objects.get(event=bad, subscriber="story")
    assert delivery.status == Delivery.Status.DEAD and "lacks task_id" in delivery.last_error


def test_a_batch_that_raises_is_run_again_one_by_one(user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("the batch path is broken")

    monkeypatch.setattr(batch, "hold_against_delete", broken)  # the one-by-one path has its own
    good = [complete(TaskFactory(owner=user)) for _ in range(3)]
    bad = OutboxEvent.objects.create(
        type="task.completed", version=1, aggregate_type="tasks_app.task", aggregate_id="x", payload={}
    )
    assert run([*good, bad]) == {"succeeded": 3, "dead": 1}
    assert StorySegment.objects.count() == 3


def test_a_writer_failure_fails_its_own_event_without_asking_the_writer_again(
    user: Any, counting_writer: type[CountingWriter]
) -> None:
    counting_writer.fail["Tax return"] = [PermanentError("the model refused")]
    events = [complete(TaskFactory(owner=user, title=t)) for t in ("Tax return", "Plant tomatoes")]
    assert run(events) == {"succeeded": 1, "dead": 1}
    assert counting_writer.calls.count("Tax return") == 1
    assert list(StorySegment.objects.values_list("title", flat=True)) == ["Plant tomatoes"]
    delivery = Delivery.objects.get(event=events[0], subscriber="story")
    assert delivery.last_error.endswith("PermanentError: the model refused")


def test_a_writer_that_is_down_is_asked_once_per_batch(
    user: Any, counting_writer: type[CountingWriter]
) -> None:
    counting_writer.down = True
    events = [
        complete(TaskFactory(owner=user, title=t)) for t in ("Tax return", "Plant tomatoes", "Passport")
    ]
    assert run(events) == {"retry": 3}
    assert len(counting_writer.calls) == 1  # not once per task: the batch would take minutes
    assert not StorySegment.objects.exists()
    failed = Delivery.objects.filter(event__in=events, last_error__contains="failed earlier in this batch")
    assert failed.count() == 2
    counting_writer.down = False
    assert run(events) == {"succeeded": 3}  # the retries, once the writer is back


def test_a_replayed_batch_writes_nothing_new(world: list[OutboxEvent], counting_writer: Any) -> None:
    assert run(world) == {"succeeded": len(world)}
    first = {s.pk: (s.subject_id, s.text, s.event_id) for s in StorySegment.objects.all()}
    counting_writer.calls.clear()
    assert run(world) == {"succeeded": len(world)}
    assert {s.pk: (s.subject_id, s.text, s.event_id) for s in StorySegment.objects.all()} == first
    assert counting_writer.calls == []  # written segments are not written again, not even drafted


class ProbeWriter:
    """A writer that records, while it writes, whether anything is held: a transaction on the
    delivery's connection, or (seen from another connection) a lock on the task or a delivery."""

    name = "probe"
    seen: list[dict[str, Any]] = []

    def write(self, context: StoryContext) -> str:
        params = connection.get_connection_params()
        with psycopg.connect(**params, autocommit=True) as other:
            locked = {}
            for table, where, arg in (
                (Task._meta.db_table, "id = %s", context.subject_id),
                (Delivery._meta.db_table, "subscriber = %s", "story"),
            ):
                try:
                    other.execute(f"SELECT 1 FROM {table} WHERE {where} FOR UPDATE NOWAIT", [arg])  # noqa: S608
                    locked[table] = False
                except psycopg.errors.LockNotAvailable:
                    locked[table] = True
        ProbeWriter.seen.append(
            {
                "in_atomic_block": connection.in_atomic_block,
                "in_transaction": connection.connection is not None
                and connection.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE,
                **locked,
            }
        )
        return f"Done: {context.title}"


@pytest.mark.django_db(transaction=True)
def test_the_writer_runs_outside_any_transaction(settings: Any) -> None:
    settings.STORY_WRITER = "tests.test_story_batch.ProbeWriter"
    writers.get_writer.cache_clear()
    ProbeWriter.seen = []
    user = UserFactory()
    events = [remember(TaskFactory(owner=user, title=f"Paint fence {i}")) for i in range(3)]
    assert run(events) == {"succeeded": 3}
    nothing_held = {
        "in_atomic_block": False,
        "in_transaction": False,
        Task._meta.db_table: False,
        Delivery._meta.db_table: False,
    }
    assert ProbeWriter.seen == [nothing_held] * 3
    assert sorted(StorySegment.objects.values_list("text", flat=True)) == [
        f"Done: Paint fence {i}" for i in range(3)
    ]


def between_prepare_and_claim(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """Run `change` after the batch's texts are written and before its deliveries are claimed."""
    real = batch.draft_stories

    def then_change(events: Any, recall_many: Any) -> batch.Drafts:
        prepared = real(events, recall_many)
        change()
        return prepared

    monkeypatch.setattr(batch, "draft_stories", then_change)


def test_a_task_edited_between_prepare_and_claim_is_written_as_it_is_now(
    user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    edited, kept = TaskFactory(owner=user, title="Old name"), TaskFactory(owner=user, title="Kept")
    events = [complete(edited), complete(kept)]
    between_prepare_and_claim(
        monkeypatch,
        lambda: Task.objects.filter(pk=edited.pk).update(title="New name", description="New words"),
    )
    assert run(events) == {"succeeded": 2}
    segment = StorySegment.objects.get(subject_id=edited.pk)
    assert segment.title == "New name"
    assert "New name" in segment.text and "New words" in segment.text and "Old name" not in segment.text
    assert StorySegment.objects.get(subject_id=kept.pk).title == "Kept"


def test_a_task_deleted_between_prepare_and_claim_gets_no_segment(
    user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone, kept = TaskFactory(owner=user), TaskFactory(owner=user)
    events = [complete(gone), complete(kept)]
    between_prepare_and_claim(monkeypatch, lambda: services.delete_task(Task.objects.get(pk=gone.pk)))
    assert run(events) == {"succeeded": 2}
    assert list(StorySegment.objects.values_list("subject_id", flat=True)) == [kept.pk]


class DownStore:
    """A vector store that is down, with the batch methods or (batch=False) without them."""

    def vector_of(self, owner_id: int, task_id: str) -> None:
        raise StoreUnavailable("weaviate fetch: connection refused")

    def vector_of_many(self, keys: Any) -> None:
        raise StoreUnavailable("weaviate fetch: connection refused")


class DownStoreWithoutBatch:
    vector_of = DownStore.vector_of


@pytest.mark.parametrize("store", [DownStore, DownStoreWithoutBatch])
def test_without_memory_every_segment_says_so(
    user: Any, monkeypatch: pytest.MonkeyPatch, store: type
) -> None:
    monkeypatch.setattr("workers.memory.recall.get_store", store)
    events = [complete(TaskFactory(owner=user, title=f"Fix the bike {i}")) for i in range(3)]
    assert run(events) == {"succeeded": 3}
    assert {(tuple(s.recalled), s.metadata["memory"]) for s in StorySegment.objects.all()} == {
        ((), "unavailable: StoreUnavailable: weaviate fetch: connection refused")
    }


def test_chapters_and_deletes_in_a_batch_run_one_by_one_after_it(user: Any) -> None:
    project = ProjectFactory(owner=user, title="Garden")
    task, doomed = TaskFactory(owner=user, project=project), TaskFactory(owner=user, project=None)
    completed, doomed_completed = complete(task), complete(doomed)
    deliver("progress", completed)
    services.delete_task(doomed)
    events = [
        completed,
        doomed_completed,
        *OutboxEvent.objects.filter(type__in=["project.completed", "task.deleted"]),
    ]
    assert run(events) == {"succeeded": 4}
    assert sorted(StorySegment.objects.values_list("kind", "subject_id")) == [
        ("project", project.pk),
        ("task", task.pk),
    ]


# --- recall for many tasks -------------------------------------------------------------


def loaded(tasks: list[Task]) -> list[Task]:
    return list(
        Task.objects.filter(pk__in=[t.pk for t in tasks]).select_related("project").prefetch_related("media")
    )


@pytest.mark.parametrize("exact_scan_max", [vectorstores.EXACT_SCAN_MAX, 2])
def test_related_tasks_many_answers_as_related_tasks(
    user: Any, monkeypatch: pytest.MonkeyPatch, exact_scan_max: int
) -> None:
    """Owners with few memories (exact scan) and, with a low EXACT_SCAN_MAX, many (HNSW walk)."""
    monkeypatch.setattr(vectorstores, "EXACT_SCAN_MAX", exact_scan_max)
    other = UserFactory()
    titles = ("Run 10 km", "Book the dentist", "Run a half marathon", "Swim 1 km", "Run 5 km by the river")
    mine = [TaskFactory(owner=user, project=None, title=t) for t in titles]
    for task in mine[:4]:
        remember(task)
    complete(mine[4])  # not indexed by memory yet: its text is embedded
    theirs = TaskFactory(owner=other, project=None, title="Run with the club")
    remember(TaskFactory(owner=other, project=None, title="Run 3 km"))
    remember(theirs)
    tasks = loaded([*mine, theirs])
    many = recall.related_tasks_many(tasks, 3)
    one_by_one = {t.pk: recall.related_tasks(t, 3) for t in tasks}
    assert {pk: [(r["task"], r["title"]) for r in hits] for pk, hits in many.items()} == {
        pk: [(r["task"], r["title"]) for r in hits] for pk, hits in one_by_one.items()
    }
    for pk, hits in many.items():
        assert np.allclose([r["score"] for r in hits], [r["score"] for r in one_by_one[pk]], atol=2e-3)
    assert [r["title"] for r in many[theirs.pk]] == ["Run 3 km"]  # the owner's own, earlier only


def test_the_weaviate_store_answers_batches_task_by_task() -> None:
    server = FakeWeaviate()
    store = WeaviateStore(server.url, server.grpc_port, "TaskMemory")
    try:
        rng = np.random.default_rng(3)
        vectors = rng.normal(size=(4, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(4)]
        store.upsert([MemoryItem(ids[n], 7 + n % 2, f"task {n}", "text", vectors[n]) for n in range(4)])
        keys = [(7, ids[0]), (8, ids[1]), (8, ids[2])]  # the last: another owner's task
        found = store.vector_of_many(keys)
        assert set(found) == {ids[0], ids[1]}
        assert np.allclose(found[ids[1]], vectors[1], atol=1e-6)
        queries = [SearchQuery(7, vectors[0], exclude=ids[0]), SearchQuery(8, vectors[1])]
        assert store.search_many(queries, 2) == [
            store.search(7, vectors[0], 2, exclude=ids[0]),
            store.search(8, vectors[1], 2),
        ]
    finally:
        store.close()
        server.close()
