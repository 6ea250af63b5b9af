"""CRUD for goals, projects, tasks and media; every object is its owner's alone."""

import uuid

import pytest
from rest_framework.test import APIClient

from outbox.models import OutboxEvent
from tasks_app.models import Goal, MediaAttachment, Project, Task

from .factories import GoalFactory, MediaAttachmentFactory, ProjectFactory, TaskFactory

pytestmark = pytest.mark.django_db
# selfos.api.Pagination: 50 a page unless `page_size` asks otherwise, never more than 200 (README).
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def test_goal_project_task_lifecycle(api: APIClient, user) -> None:
    goal = api.post("/api/goals/", {"title": "Run a marathon", "target_date": "2027-05-01"}).json()
    assert goal["status"] == "active"
    project = api.post("/api/projects/", {"title": "Base training", "goal": goal["id"]}).json()
    assert project["goal"] == goal["id"]
    task = api.post("/api/tasks/", {"title": "5 km easy", "project": project["id"], "estimate": 3})
    assert task.status_code == 201, task.json()
    body = task.json()
    assert body["status"] == "todo" and body["completed_at"] is None and body["media"] == []

    changed = api.patch(f"/api/tasks/{body['id']}/", {"status": "in_progress", "title": "6 km easy"})
    assert changed.status_code == 200
    assert changed.json()["status"] == "in_progress"
    assert changed.json()["title"] == "6 km easy"

    listed = api.get("/api/tasks/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]

    assert api.delete(f"/api/tasks/{body['id']}/").status_code == 204
    assert not Task.objects.filter(pk=body["id"]).exists()
    assert api.delete(f"/api/projects/{project['id']}/").status_code == 204
    assert api.delete(f"/api/goals/{goal['id']}/").status_code == 204


def test_deleting_a_task_records_an_event(api: APIClient, user) -> None:
    task = TaskFactory(owner=user)
    assert api.delete(f"/api/tasks/{task.pk}/").status_code == 204
    event = OutboxEvent.objects.get(type="task.deleted")
    assert event.payload["task_id"] == str(task.pk)


def test_media_list_and_attach(api: APIClient, user) -> None:
    task = TaskFactory(owner=user)
    MediaAttachmentFactory(task=task, caption="first")
    created = api.post(
        f"/api/tasks/{task.pk}/media/",
        {"kind": "image", "url": "https://x.example/a.jpg", "caption": "summit"},
    )
    assert created.status_code == 201, created.json()
    listed = api.get(f"/api/tasks/{task.pk}/media/").json()
    assert [m["caption"] for m in listed["results"]] == ["first", "summit"]
    assert [m["caption"] for m in api.get(f"/api/tasks/{task.pk}/").json()["media"]] == ["first", "summit"]


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "hologram", "caption": "x"},
        {"kind": "image", "url": "not a url"},
        {"kind": "image"},
        {"kind": "note", "caption": "x" * 501},
        {"kind": "note", "caption": "x", "task": "someone-else"},
    ],
)
def test_media_validation(api: APIClient, user, body: dict) -> None:
    task = TaskFactory(owner=user)
    response = api.post(f"/api/tasks/{task.pk}/media/", body)
    assert response.status_code == 400
    assert response.json()
    assert not MediaAttachment.objects.exists()


@pytest.mark.parametrize(
    ("model_factory", "path"),
    [(GoalFactory, "goals"), (ProjectFactory, "projects"), (TaskFactory, "tasks")],
)
def test_another_users_objects_are_not_found(api: APIClient, other_user, model_factory, path: str) -> None:
    theirs = model_factory(owner=other_user)
    assert api.get(f"/api/{path}/").json()["count"] == 0
    for method in ("get", "patch", "put", "delete"):
        response = getattr(api, method)(f"/api/{path}/{theirs.pk}/", {"title": "mine now"})
        assert response.status_code == 404, method
        assert response.json() == {"detail": "No " + theirs._meta.object_name + " matches the given query."}
    theirs.refresh_from_db()
    assert theirs.title != "mine now"


def test_another_users_task_cannot_be_completed_or_given_media(api: APIClient, other_user) -> None:
    theirs = TaskFactory(owner=other_user)
    assert api.put(f"/api/tasks/{theirs.pk}/complete/").status_code == 404
    assert api.get(f"/api/tasks/{theirs.pk}/media/").status_code == 404
    assert api.post(f"/api/tasks/{theirs.pk}/media/", {"kind": "note", "caption": "x"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "todo"
    assert not OutboxEvent.objects.exists()


def test_cannot_link_to_another_users_goal_or_project(api: APIClient, other_user) -> None:
    their_goal = GoalFactory(owner=other_user)
    their_project = ProjectFactory(owner=other_user)
    response = api.post("/api/projects/", {"title": "sneaky", "goal": str(their_goal.pk)})
    assert response.status_code == 400
    assert "goal" in response.json()
    response = api.post("/api/tasks/", {"title": "sneaky", "project": str(their_project.pk)})
    assert response.status_code == 400
    assert "project" in response.json()
    assert not Project.objects.filter(title="sneaky").exists()
    assert not Task.objects.filter(title="sneaky").exists()


@pytest.mark.parametrize("path", ["goals", "projects", "tasks"])
def test_malformed_and_unknown_uuids_are_404(api: APIClient, path: str) -> None:
    for bad in ("not-a-uuid", "123", str(uuid.uuid4()), "%F0%9F%98%80"):
        response = api.get(f"/api/{path}/{bad}/")
        assert response.status_code == 404, bad
        assert "detail" in response.json()


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "x" * 201},
        {"title": "ok", "status": "done"},
        {"title": "ok", "status": "completed"},
        {"title": "ok", "estimate": -1},
        {"title": "ok", "estimate": "lots"},
        {"title": "ok", "due_date": "tomorrow"},
        {"title": "ok", "project": "not-a-uuid"},
        {"title": "ok", "owner": 1},
        {"title": ["a", "list"]},
        {"title": "ok", "description": "x" * 10_001},
    ],
)
def test_task_validation(api: APIClient, body: dict) -> None:
    response = api.post("/api/tasks/", body, format="json")
    assert response.status_code == 400, response.json()
    assert isinstance(response.json(), dict) and response.json()
    assert not Task.objects.exists()


def test_unicode_and_emoji_round_trip(api: APIClient) -> None:
    title = "Ναυσικά 🏔️ 登山"
    created = api.post("/api/goals/", {"title": title}).json()
    assert api.get(f"/api/goals/{created['id']}/").json()["title"] == title


def test_invalid_json_is_a_400_json(api: APIClient) -> None:
    response = api.generic("POST", "/api/goals/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert not Goal.objects.exists()


def test_wrong_content_type_is_a_415_json(api: APIClient) -> None:
    response = api.generic("POST", "/api/goals/", "title=x", content_type="text/plain")
    assert response.status_code == 415
    assert "Unsupported media type" in response.json()["detail"]


def test_oversized_body_is_a_413_json(api: APIClient, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post("/api/goals/", {"title": "x", "description": "y" * 5000}, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert not Goal.objects.exists()


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=99999999999999999999", "page=abc"])
def test_a_page_that_does_not_exist_is_a_404(api: APIClient, user, query: str) -> None:
    GoalFactory.create_batch(3, owner=user)
    response = api.get(f"/api/goals/?{query}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_a_page_size_below_one_falls_back_to_the_default(api: APIClient, user) -> None:
    GoalFactory.create_batch(PAGE_SIZE + 1, owner=user)
    response = api.get("/api/goals/?page_size=-5")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == PAGE_SIZE + 1 and len(body["results"]) == PAGE_SIZE


def test_page_size_is_capped(api: APIClient, user) -> None:
    goals = GoalFactory.create_batch(MAX_PAGE_SIZE + 5, owner=user)
    response = api.get("/api/goals/?page_size=100000")
    assert response.status_code == 200
    first = response.json()
    assert first["count"] == MAX_PAGE_SIZE + 5
    assert len(first["results"]) == MAX_PAGE_SIZE
    assert first["previous"] is None
    assert first["next"] == "http://testserver/api/goals/?page=2&page_size=100000"
    rest = api.get(first["next"]).json()
    assert len(rest["results"]) == 5 and rest["next"] is None
    # Between them, the two pages hold every goal once.
    assert sorted(g["id"] for g in first["results"] + rest["results"]) == sorted(str(g.pk) for g in goals)
