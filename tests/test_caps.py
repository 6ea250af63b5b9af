"""Caps: media per task, a task's nested media, the length of a memory search; each past its limit
is a 400 with a JSON body that names the limit, and changes nothing."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from drf_spectacular.generators import SchemaGenerator
from rest_framework.exceptions import NotFound
from rest_framework.test import APIClient

from tasks_app.models import MediaAttachment, Task
from tasks_app.serializers import MediaAttachmentSerializer
from workers.memory import recall

from .factories import TaskFactory, TokenFactory, UserFactory

MAX_MEDIA = 50  # SELFOS_MAX_MEDIA_PER_TASK's default (README)
PREVIEW = 10  # SELFOS_TASK_MEDIA_PREVIEW's default
MAX_QUERY = 500  # SELFOS_MAX_SEARCH_QUERY_CHARS's default
NOTE = {"kind": "note", "caption": "one more"}


def with_media(task: Task, count: int) -> None:
    MediaAttachment.objects.bulk_create(
        MediaAttachment(task=task, kind="note", caption=f"note {i:02}") for i in range(count)
    )


def test_the_defaults_are_the_documented_ones(settings: Any) -> None:
    assert settings.SELFOS_MAX_MEDIA_PER_TASK == MAX_MEDIA
    assert settings.SELFOS_TASK_MEDIA_PREVIEW == PREVIEW
    assert settings.SELFOS_MAX_SEARCH_QUERY_CHARS == MAX_QUERY


# --- Media per task ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_last_place_is_taken_then_a_400_names_the_limit(api: APIClient, user) -> None:
    task = TaskFactory(owner=user)
    with_media(task, MAX_MEDIA - 1)
    assert api.post(f"/api/tasks/{task.pk}/media/", NOTE).status_code == 201
    refused = api.post(f"/api/tasks/{task.pk}/media/", NOTE)
    assert refused.status_code == 400
    full = f"A task holds at most {MAX_MEDIA} media attachments, and this one is full."
    assert refused.json() == {"non_field_errors": [full]}
    assert MediaAttachment.objects.filter(task=task).count() == MAX_MEDIA


@pytest.mark.django_db
def test_the_media_cap_is_per_task_and_set_by_the_setting(api: APIClient, user, settings: Any) -> None:
    settings.SELFOS_MAX_MEDIA_PER_TASK = 2
    full, other = TaskFactory(owner=user), TaskFactory(owner=user)
    with_media(full, 2)
    refused = api.post(f"/api/tasks/{full.pk}/media/", NOTE)
    assert refused.status_code == 400 and "at most 2 media" in refused.json()["non_field_errors"][0]
    assert api.post(f"/api/tasks/{other.pk}/media/", NOTE).status_code == 201


@pytest.mark.django_db
def test_an_invalid_attachment_to_a_full_task_still_gets_its_own_errors(api: APIClient, user) -> None:
    task = TaskFactory(owner=user)
    with_media(task, MAX_MEDIA)
    refused = api.post(f"/api/tasks/{task.pk}/media/", {"kind": "hologram", "caption": "x"})
    assert refused.status_code == 400 and set(refused.json()) == {"kind"}


@pytest.mark.django_db(transaction=True)
def test_two_attaches_at_once_cannot_both_take_the_last_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """The count and the insert are one locked step: without the task's row lock both would pass."""
    user = UserFactory()
    task = TaskFactory(owner=user)
    with_media(task, MAX_MEDIA - 1)
    check = MediaAttachmentSerializer._check_room_on

    def slow_check(task: Task) -> None:
        check(task)
        time.sleep(0.5)  # counted, not yet saved: the other attach comes in now

    monkeypatch.setattr(MediaAttachmentSerializer, "_check_room_on", staticmethod(slow_check))
    statuses: list[int] = []
    start = threading.Barrier(2)
    key = TokenFactory(user=user).key

    def attach() -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            start.wait()
            statuses.append(client.post(f"/api/tasks/{task.pk}/media/", NOTE).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attach) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(statuses) == [201, 400]
    assert MediaAttachment.objects.filter(task=task).count() == MAX_MEDIA


@pytest.mark.django_db
def test_an_attach_to_a_task_deleted_meanwhile_is_a_404_not_a_crash(user) -> None:
    task = TaskFactory(owner=user)
    serializer = MediaAttachmentSerializer(data=NOTE, context={"task": task})
    Task.objects.filter(pk=task.pk).delete()  # after the view found it, before the attach
    with transaction.atomic(), pytest.raises(NotFound):
        serializer.is_valid()


# --- A task's nested media -------------------------------------------------------------


@pytest.mark.django_db
def test_a_task_nests_its_first_media_and_links_to_all_of_them(api: APIClient, user) -> None:
    task = TaskFactory(owner=user)
    with_media(task, PREVIEW + 5)
    body = api.get(f"/api/tasks/{task.pk}/").json()
    assert [m["caption"] for m in body["media"]] == [f"note {i:02}" for i in range(PREVIEW)]
    assert body["media_count"] == PREVIEW + 5
    assert body["media_url"] == f"http://testserver/api/tasks/{task.pk}/media/"
    first = api.get(body["media_url"], {"page_size": 10}).json()
    assert first["count"] == PREVIEW + 5 and len(first["results"]) == 10 and first["next"]
    rest = api.get(first["next"]).json()
    assert [m["caption"] for m in first["results"] + rest["results"]] == [
        f"note {i:02}" for i in range(PREVIEW + 5)
    ]


@pytest.mark.django_db
def test_a_new_task_and_a_task_in_a_list_carry_the_same_media_fields(api: APIClient, user) -> None:
    created = api.post("/api/tasks/", {"title": "Bare"}).json()
    assert (created["media"], created["media_count"]) == ([], 0)
    assert created["media_url"].endswith(f"/api/tasks/{created['id']}/media/")
    task = TaskFactory(owner=user)
    with_media(task, 3)
    listed = {t["id"]: t for t in api.get("/api/tasks/").json()["results"]}
    assert listed[str(task.pk)]["media_count"] == 3 and len(listed[str(task.pk)]["media"]) == 3


@pytest.mark.django_db
def test_nesting_and_counting_media_costs_no_query_per_task(api: APIClient, user) -> None:
    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get("/api/tasks/").status_code == 200
        return len(queries)

    with_media(TaskFactory(owner=user), 12)
    one = queries_for_the_list()
    for _ in range(4):
        with_media(TaskFactory(owner=user), 12)
    assert queries_for_the_list() == one


def test_the_schema_documents_the_bounded_media_fields() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    task = schema["components"]["schemas"]["Task"]["properties"]
    assert task["media"]["type"] == "array"
    assert task["media"]["items"] == {"$ref": "#/components/schemas/MediaAttachment"}
    assert "media_url" in task["media"]["description"]
    assert task["media_count"]["type"] == "integer"
    assert (task["media_url"]["type"], task["media_url"]["format"]) == ("string", "uri")
    assert {"media", "media_count", "media_url"} <= set(schema["components"]["schemas"]["Task"]["required"])
    listing = schema["paths"]["/api/tasks/{id}/media/"]["get"]["responses"]["200"]
    assert listing["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PaginatedMediaAttachmentList"
    }


# --- The memory search's query -----------------------------------------------------------


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The queries that reached the search (the model is not loaded)."""
    seen: list[str] = []

    def search(user_id: int, query: str, k: int) -> list[Any]:
        seen.append(query)
        return []

    monkeypatch.setattr(recall, "search", search)
    return seen


@pytest.mark.django_db
def test_a_search_query_past_the_limit_is_a_400_that_names_it(api: APIClient, searches: list[str]) -> None:
    refused = api.get("/api/memory/search/", {"q": "x" * (MAX_QUERY + 1)})
    assert refused.status_code == 400
    assert refused.json() == {"q": [f"Ensure this field has no more than {MAX_QUERY} characters."]}
    assert searches == []
    assert api.get("/api/memory/search/", {"q": "é" * MAX_QUERY}).status_code == 200
    assert api.get("/api/memory/search/", {"q": f"  {'x' * MAX_QUERY}  "}).status_code == 200  # trimmed
    assert searches == ["é" * MAX_QUERY, "x" * MAX_QUERY]


def test_the_schema_documents_the_query_limit() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    params = schema["paths"]["/api/memory/search/"]["get"]["parameters"]
    (q,) = [p for p in params if p["name"] == "q"]
    assert q["schema"]["maxLength"] == MAX_QUERY
