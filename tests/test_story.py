"""The story subscriber: one segment per completed task, drawing on media, progress and memory."""

import psycopg
import pytest
from django.db import OperationalError, connection
from rest_framework.test import APIClient

from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Task
from workers.memory import recall
from workers.memory.recall import MemoryUnavailable
from workers.memory.stores import StoreUnavailable
from workers.models import StorySegment
from workers.story import writers
from workers.story.writers import StoryContext, TemplateWriter

from .conftest import deliver
from .factories import MediaAttachmentFactory, ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_memory(monkeypatch):
    def unavailable(task_or_tasks, k):
        raise MemoryUnavailable("vector store down")

    monkeypatch.setattr("workers.story.handler.related_tasks", unavailable)
    monkeypatch.setattr("workers.story.handler.related_tasks_many", unavailable)


@pytest.fixture
def fixed_memory(monkeypatch, user):
    """Memory recalls one earlier task of the user's: a real row (a story holds what it recalls)."""
    earlier = TaskFactory(owner=user, project=None, title="Hill repeats")
    recalled = [{"task": str(earlier.pk), "title": "Hill repeats", "score": 0.71}]
    monkeypatch.setattr("workers.story.handler.related_tasks", lambda task, k: recalled)
    monkeypatch.setattr(
        "workers.story.handler.related_tasks_many", lambda tasks, k: {t.pk: recalled for t in tasks}
    )
    return recalled


def complete(task: Task) -> OutboxEvent:
    services.complete_task(task, by=task.owner)
    return OutboxEvent.objects.filter(aggregate_id=str(task.pk)).latest("id")


def test_a_segment_uses_media_progress_and_recalled_tasks(user, fixed_memory) -> None:
    project = ProjectFactory(owner=user, title="Marathon base")
    TaskFactory(owner=user, project=project)  # still open: the project will stand at 50 %
    task = TaskFactory(owner=user, project=project, title="Long run", description="18 km along the river")
    MediaAttachmentFactory(task=task, kind="image", caption="sunrise over the bridge")
    MediaAttachmentFactory(task=task, kind="note", url="", caption="legs felt strong")
    assert deliver("story", complete(task)) == {"succeeded": 1}
    segment = StorySegment.objects.get()
    assert segment.kind == "task" and segment.subject_id == task.pk and segment.writer == "template"
    assert "“Long run”" in segment.text and "18 km along the river" in segment.text
    assert "sunrise over the bridge" in segment.text and "legs felt strong" in segment.text
    assert "Marathon base" in segment.text and "50%" in segment.text
    assert "Hill repeats" in segment.text
    assert [m["caption"] for m in segment.media] == ["sunrise over the bridge", "legs felt strong"]
    assert segment.recalled == fixed_memory
    assert segment.metadata["memory"] == "ok"


def test_one_segment_per_task_however_often_it_is_delivered(user, fixed_memory) -> None:
    event = complete(TaskFactory(owner=user))
    deliver("story", event)
    deliver("story", event)
    assert StorySegment.objects.count() == 1


def test_without_memory_the_story_is_still_told_and_says_so(user, no_memory) -> None:
    assert deliver("story", complete(TaskFactory(owner=user, title="Fix the bike"))) == {"succeeded": 1}
    segment = StorySegment.objects.get()
    assert "Fix the bike" in segment.text
    assert segment.recalled == []
    assert segment.metadata["memory"] == "unavailable: vector store down"


def test_the_template_writer_varies_between_tasks_and_is_stable_for_one() -> None:
    writer = TemplateWriter()
    texts = {
        writer.write(StoryContext(kind="task", subject_id=f"task-{i}", title="Same title")) for i in range(12)
    }
    assert len(texts) > 3
    one = StoryContext(kind="task", subject_id="task-1", title="Same title")
    assert writer.write(one) == writer.write(one)


def test_a_finished_project_closes_a_chapter(user, fixed_memory) -> None:
    project = ProjectFactory(owner=user, title="Garden")
    task = TaskFactory(owner=user, project=project)
    deliver("progress", complete(task))
    milestone = OutboxEvent.objects.get(type="project.completed")
    deliver("story", milestone)
    deliver("story", milestone)
    chapter = StorySegment.objects.get(kind="project")
    assert chapter.title == "Chapter closed: Garden"
    assert "“Garden” is complete after 1 tasks" in chapter.text
    goal_event = OutboxEvent.objects.get(type="goal.reached")
    deliver("story", goal_event)
    assert StorySegment.objects.filter(kind="goal", subject_id=project.goal_id).count() == 1


def test_a_task_reopened_before_its_story_gets_none(user, fixed_memory) -> None:
    task = TaskFactory(owner=user)
    event = complete(task)
    services.reopen_task(task)
    assert deliver("story", event) == {"succeeded": 1}
    assert not StorySegment.objects.exists()


def test_the_llm_writer_speaks_chat_completions(user, fake_chat, fixed_memory) -> None:
    task = TaskFactory(owner=user, title="Tax return")
    MediaAttachmentFactory(task=task, caption="receipt pile")
    assert deliver("story", complete(task)) == {"succeeded": 1}
    segment = StorySegment.objects.get()
    assert segment.writer == "openai"
    assert segment.text.startswith("A story from the model")
    [request] = fake_chat.requests
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["body"]["model"] == "fake-model"
    facts = request["body"]["messages"][-1]["content"]
    assert "Tax return" in facts and "receipt pile" in facts and "Hill repeats" in facts


@pytest.mark.parametrize("failure", [500, 503, 429, "slow"])
def test_the_llm_writer_retries_timeouts_and_server_errors(user, fake_chat, fixed_memory, failure) -> None:
    fake_chat.plan.append(failure)
    event = complete(TaskFactory(owner=user))
    assert deliver("story", event) == {"retry": 1}
    delivery = Delivery.objects.get(event=event, subscriber="story")
    assert delivery.status == "pending" and "TransientError" in delivery.last_error
    assert not StorySegment.objects.exists()
    assert deliver("story", event) == {"succeeded": 1}  # the retry, once the server is back
    assert StorySegment.objects.count() == 1


def test_the_llm_writer_treats_a_4xx_as_permanent(user, fake_chat, fixed_memory) -> None:
    fake_chat.plan.append(401)
    event = complete(TaskFactory(owner=user))
    assert deliver("story", event) == {"dead": 1}
    assert "story writer refused the request: 401" in Delivery.objects.get(event=event).last_error


def test_story_api_lists_own_segments_newest_first(api: APIClient, user, fixed_memory) -> None:
    first, second = TaskFactory(owner=user, title="First"), TaskFactory(owner=user, title="Second")
    deliver("story", complete(first))
    deliver("story", complete(second))
    deliver("story", complete(TaskFactory(owner=UserFactory(), title="Someone else's")))
    body = api.get("/api/story/").json()
    assert body["count"] == 2
    assert [s["title"] for s in body["results"]] == ["Second", "First"]


def test_recall_reports_a_store_that_is_down_as_unavailable(user, monkeypatch) -> None:
    class Down:
        def vector_of(self, owner_id, task_id):
            raise StoreUnavailable("weaviate fetch: connection refused")

    monkeypatch.setattr("workers.memory.recall.get_store", lambda: Down())
    with pytest.raises(MemoryUnavailable, match="connection refused"):
        recall.related_tasks(TaskFactory(owner=user), 3)


def test_a_misconfigured_store_is_an_error_not_a_story_without_memories(user, monkeypatch) -> None:
    """Only a store that is down makes a story "without memories"; a bug or a bad setting
    fails the delivery, visibly (and a misspelled MEMORY_STORE already fails `check`)."""

    def broken_store():
        raise RuntimeError("store misconfigured")

    monkeypatch.setattr("workers.memory.recall.get_store", broken_store)
    with pytest.raises(RuntimeError, match="store misconfigured"):
        recall.related_tasks(TaskFactory(owner=user), 3)


def test_the_segment_tells_the_progress_of_its_moment(user, fixed_memory) -> None:
    project = ProjectFactory(owner=user, title="Garden")
    first, second = TaskFactory(owner=user, project=project), TaskFactory(owner=user, project=project)
    first_event = complete(first)
    complete(second)
    deliver("story", first_event)  # the story runs after both were done
    assert "Garden" in StorySegment.objects.get().text and "50%" in StorySegment.objects.get().text


def test_our_own_database_failing_under_recall_retries_the_story_instead_of_telling_it_without(
    user, monkeypatch
) -> None:
    """A store that is down makes a story "without memories"; the database itself going away
    is not that: the story is retried, so the segment it writes, once, has its recall."""

    class Failover:
        def vector_of(self, owner_id, task_id):
            raise OperationalError("canceling statement due to conflict with recovery")

    monkeypatch.setattr("workers.memory.recall.get_store", lambda: Failover())
    event = complete(TaskFactory(owner=user, title="Fix the bike"))
    assert deliver("story", event) == {"retry": 1}
    assert not StorySegment.objects.exists()
    delivery = Delivery.objects.get(event=event, subscriber="story")
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.last_error.startswith("OperationalError: canceling statement")


class LockProbeWriter:
    """A writer that looks, from another connection, whether the task is locked while it writes."""

    name = "lock-probe"
    seen: list[str] = []

    def write(self, context: StoryContext) -> str:
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
            try:
                other.execute(
                    "SELECT 1 FROM tasks_app_task WHERE id = %s FOR UPDATE NOWAIT", [context.subject_id]
                )
                LockProbeWriter.seen.append("unlocked")
            except psycopg.errors.LockNotAvailable:
                LockProbeWriter.seen.append("locked")
        return f"Done: {context.title}"


@pytest.mark.django_db(transaction=True)
def test_the_writer_runs_before_the_task_is_locked(user, settings) -> None:
    """An LLM writer may take seconds: the task's row must not be held meanwhile, or the user's
    own edits would wait behind it. The segment is recorded under the lock afterwards."""
    settings.STORY_WRITER = "tests.test_story.LockProbeWriter"
    writers.get_writer.cache_clear()
    LockProbeWriter.seen.clear()
    task = TaskFactory(owner=user, title="Paint the fence")
    assert deliver("story", complete(task)) == {"succeeded": 1}
    assert LockProbeWriter.seen == ["unlocked"]
    assert StorySegment.objects.get().text == "Done: Paint the fence"


class RenamingWriter:
    """A writer during whose (first) call the user renames the task."""

    name = "renaming"

    def write(self, context: StoryContext) -> str:
        Task.objects.filter(pk=context.subject_id, title="Old name").update(title="New name")
        return f"Done: {context.title}"


def test_a_task_renamed_while_its_text_is_written_is_written_again(user, settings) -> None:
    settings.STORY_WRITER = "tests.test_story.RenamingWriter"
    writers.get_writer.cache_clear()
    assert deliver("story", complete(TaskFactory(owner=user, title="Old name"))) == {"succeeded": 1}
    segment = StorySegment.objects.get()
    assert (segment.title, segment.text) == ("New name", "Done: New name")
