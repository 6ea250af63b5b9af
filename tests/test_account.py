"""The account endpoints: log out, delete the account (and everything derived from it), export it."""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessLog
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.models import Model
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from outbox import audit
from outbox.delivery import run_deliveries
from outbox.models import Delivery, OutboxEvent
from selfos.accounts import export
from tasks_app import services
from tasks_app.models import Goal, MediaAttachment, Project, Task
from workers.memory import stores as vectorstores
from workers.memory.weaviate_store import tenant_of
from workers.models import (
    Device,
    MemoryEntry,
    Notification,
    Preferences,
    ProgressSnapshot,
    PushReceipt,
    StorySegment,
)

from . import fake_weaviate as fake_weaviate_module
from .conftest import client_for, deliver
from .factories import GoalFactory, MediaAttachmentFactory, ProjectFactory, TaskFactory
from .fake_weaviate import FakeWeaviate

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's
SUBSCRIBERS = ("memory", "progress", "story", "notifications")
User = get_user_model()


# --- what a user has --------------------------------------------------------------------------
@dataclass
class Made:
    """One user's data, made by the real code: the ids to look for afterwards."""

    user: Any
    device_token: str
    pending_delivery: int
    ids: dict[str, set[str]] = field(default_factory=dict)


def make_everything(user: Any) -> Made:
    """A goal, a project with two tasks and media, a completed task the four subscribers handled
    (snapshot, segment, notification and its push, memory row), the milestones that followed,
    a device, preferences, a login record, and a completion nobody has delivered yet."""
    Preferences.objects.create(user=user, time_zone="Europe/Paris")
    token = f"fcm-token-of-{user.username}-0123456789abcdef"
    Device.objects.create(owner=user, token=token, platform="android")
    goal = GoalFactory(owner=user)
    project = ProjectFactory(owner=user, goal=goal)
    done = TaskFactory(owner=user, project=project, title=f"Bake bread ({user.username})")
    MediaAttachmentFactory(task=done, caption="the loaf")
    later = TaskFactory(owner=user, project=project)
    MediaAttachmentFactory(task=later)
    TaskFactory(owner=user, project=None, title="A loose task")
    services.complete_task(done, by=user)
    event = OutboxEvent.objects.get(type="task.completed", aggregate_id=str(done.pk))
    for subscriber in SUBSCRIBERS:
        assert deliver(subscriber, event) == {"succeeded": 1}, subscriber
    # As the relay leaves it once it has fanned it out (deliver() skips the relay).
    OutboxEvent.objects.filter(pk=event.pk).update(
        status=OutboxEvent.Status.DISPATCHED, dispatched_at=timezone.now()
    )
    # A completion whose other deliveries are still to come: one waiting for its retry, the
    # rest not even made. Its progress delivery completes the project: a milestone event.
    services.complete_task(later, by=user)
    pending = OutboxEvent.objects.get(type="task.completed", aggregate_id=str(later.pk))
    assert deliver("progress", pending) == {"succeeded": 1}
    waiting = Delivery.objects.create(
        event=pending,
        subscriber="story",
        status=Delivery.Status.PENDING,
        attempts=1,
        next_attempt_at=timezone.now() + timedelta(minutes=5),
    )
    AccessAttempt.objects.create(
        username=user.username,
        ip_address="192.0.2.1",
        user_agent="test",
        http_accept="*/*",
        path_info="/api/auth/token/",
        get_data="",
        post_data="",
        failures_since_start=1,
    )
    AccessLog.objects.create(
        username=user.username, ip_address="192.0.2.1", user_agent="test", http_accept="*/*", path_info="/"
    )
    made = Made(user=user, device_token=token, pending_delivery=waiting.pk)
    made.ids = {
        kind: {str(pk) for pk in queryset.values_list("pk", flat=True)}
        for kind, queryset in {
            "goals": Goal.objects.filter(owner=user),
            "projects": Project.objects.filter(owner=user),
            "tasks": Task.objects.filter(owner=user),
            "media": MediaAttachment.objects.filter(task__owner=user),
            "progress_snapshots": ProgressSnapshot.objects.filter(project__owner=user),
            "story_segments": StorySegment.objects.filter(owner=user),
            "notifications": Notification.objects.filter(owner=user),
            "devices": Device.objects.filter(owner=user),
            "memory_entries": MemoryEntry.objects.filter(owner=user),
        }.items()
    }
    # The real code made every kind: an empty one would make the checks below vacuous.
    assert all(made.ids.values()), {kind: len(ids) for kind, ids in made.ids.items()}
    assert PushReceipt.objects.filter(notification__owner=user).exists()
    assert OutboxEvent.objects.filter(type="project.completed", payload__user_id=user.pk).exists()
    return made


def references_to_user(user_id: int) -> dict[str, int]:
    """Every row of every installed model whose foreign key (or one-to-one) names the user."""
    found = {}
    for model in apps.get_models(include_auto_created=True):
        for f in model._meta.concrete_fields:
            if f.is_relation and f.related_model is not None and issubclass(f.related_model, User):
                n = model._default_manager.filter(**{f.attname: user_id}).count()
                if n:
                    found[f"{model._meta.label}.{f.name}"] = n
    return found


def derived_rows(user_id: int) -> dict[type[Model], set[Any]]:
    """The user's row and, transitively, every row that references one of them by foreign key."""
    found: dict[type[Model], set[Any]] = {User: {user_id}}
    frontier = dict(found)
    models = apps.get_models(include_auto_created=True)
    while frontier:
        new: dict[type[Model], set[Any]] = {}
        for model in models:
            for f in model._meta.concrete_fields:
                target = f.related_model if f.is_relation else None
                if target is None or target._meta.concrete_model not in frontier:
                    continue
                pks = set(
                    model._default_manager.filter(
                        **{f"{f.attname}__in": frontier[target._meta.concrete_model]}
                    ).values_list("pk", flat=True)
                )
                pks -= found.get(model, set())
                if pks:
                    new.setdefault(model, set()).update(pks)
        for model, pks in new.items():
            found.setdefault(model, set()).update(pks)
        frontier = new
    return found


def events_mentioning(user_id: int, ids: set[str]) -> list[int]:
    """Outbox events whose payload names the user, or whose aggregate or payload names their rows."""
    hits = []
    for event in OutboxEvent.objects.all():
        text = json.dumps(event.payload)
        if (
            event.payload.get("user_id") == user_id
            or event.aggregate_id in ids
            or any(i in text for i in ids)
        ):
            hits.append(event.pk)
    return hits


def all_ids(made: Made) -> set[str]:
    """The user's rows' UUIDs (snapshot ids are small integers: no use searching text for them)."""
    return set().union(*(ids for kind, ids in made.ids.items() if kind != "progress_snapshots"))


# --- log out ----------------------------------------------------------------------------------
def test_logout_revokes_the_token(api: APIClient, user: Any, other_api: APIClient) -> None:
    assert api.get("/api/goals/").status_code == 200
    response = api.post("/api/auth/logout/")
    assert response.status_code == 204
    assert not Token.objects.filter(user=user).exists()
    revoked = api.get("/api/goals/")
    assert revoked.status_code == 401 and revoked["Content-Type"].startswith("application/json")
    assert api.post("/api/auth/logout/").status_code == 401
    assert other_api.get("/api/goals/").status_code == 200  # nobody else's token
    # A new login makes a new, working token.
    login = APIClient().post("/api/auth/token/", {"username": user.username, "password": PASSWORD})
    assert login.status_code == 200
    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Token {login.json()['token']}")
    assert fresh.get("/api/goals/").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"), [("post", "/api/auth/logout/"), ("delete", "/api/me/"), ("get", "/api/me/export/")]
)
def test_every_account_endpoint_needs_authentication(anon: APIClient, method: str, path: str) -> None:
    response = getattr(anon, method)(path, {"password": PASSWORD}, format="json")
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")


# --- delete -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [{}, {"password": "wrong"}, {"password": ""}, {"password": PASSWORD + " "}, [PASSWORD], "x"],
    ids=["missing", "wrong", "empty", "trailing-space", "a-list", "a-string"],
)
def test_delete_with_a_wrong_or_missing_password_changes_nothing(
    api: APIClient, user: Any, body: Any
) -> None:
    made = make_everything(user)
    before = derived_rows(user.pk)
    events_before = events_mentioning(user.pk, all_ids(made))
    response = api.delete("/api/me/", body, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    assert derived_rows(user.pk) == before
    assert events_mentioning(user.pk, all_ids(made)) == events_before
    assert api.get("/api/goals/").status_code == 200


def test_delete_with_an_unknown_field_is_refused(api: APIClient, user: Any) -> None:
    response = api.delete("/api/me/", {"password": PASSWORD, "confirm": True}, format="json")
    assert response.status_code == 400 and "confirm" in response.json()
    assert User.objects.filter(pk=user.pk).exists()


def test_delete_removes_the_account_and_everything_derived_from_it(
    api: APIClient, user: Any, other_user: Any, use_subscribers
) -> None:
    use_subscribers(*SUBSCRIBERS)  # the product's four, as in production (for the audit below)
    mine, theirs = make_everything(user), make_everything(other_user)
    user_id = user.pk
    mine_before = derived_rows(user_id)
    theirs_before = derived_rows(other_user.pk)
    # The scan sees what there is, so an empty answer afterwards means something.
    assert {
        "authtoken.Token.user",
        "tasks_app.Goal.owner",
        "tasks_app.Project.owner",
        "tasks_app.Task.owner",
        "workers.StorySegment.owner",
        "workers.Notification.owner",
        "workers.Device.owner",
        "workers.MemoryEntry.owner",
        "workers.Preferences.user",
    } <= set(references_to_user(user_id))
    assert {MediaAttachment, ProgressSnapshot, PushReceipt} <= set(mine_before)
    assert events_mentioning(user_id, all_ids(mine))
    # A delivery in flight: its Celery message is on its way to a worker.
    milestone = OutboxEvent.objects.get(type="project.completed", payload__user_id=user_id)
    in_flight = Delivery.objects.create(event=milestone, subscriber="story", dispatched_at=timezone.now())

    response = api.delete("/api/me/", {"password": PASSWORD}, format="json")

    assert response.status_code == 204, response.content
    assert references_to_user(user_id) == {}
    for model, pks in mine_before.items():
        assert not model._default_manager.filter(pk__in=pks).exists(), model._meta.label
    connection.check_constraints()  # no row is left pointing at one that went
    # The outbox keeps nothing about the user: no event, no delivery, no attempt.
    assert events_mentioning(user_id, all_ids(mine)) == []
    assert not Delivery.objects.filter(pk__in=[mine.pending_delivery, in_flight.pk]).exists()
    # A worker that receives the in-flight delivery's message now finds nothing to do.
    assert run_deliveries("story", [in_flight.pk]) == {"skipped": 1}
    assert not AccessAttempt.objects.filter(username=user.username).exists()
    assert not AccessLog.objects.filter(username=user.username).exists()
    # The outbox audit still holds: no succeeded delivery is left whose effect went with the user.
    report = audit.run()
    assert report.promises_kept, report.violations
    # The other user keeps everything, their outbox events and login records included.
    assert derived_rows(other_user.pk) == theirs_before
    assert events_mentioning(other_user.pk, all_ids(theirs))
    assert AccessAttempt.objects.filter(username=other_user.username).exists()
    # The token is gone with the account.
    assert api.get("/api/goals/").status_code == 401


def test_delete_drops_the_weaviate_tenant_after_commit(
    settings, user: Any, other_user: Any, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    server = FakeWeaviate()
    monkeypatch.setattr(fake_weaviate_module._RESTHandler, "do_DELETE", _fake_delete_tenants, raising=False)
    settings.MEMORY_STORE = "weaviate"
    settings.WEAVIATE_URL = server.url
    settings.WEAVIATE_GRPC_PORT = server.grpc_port
    vectorstores.get_store.cache_clear()
    try:
        for owner in (user, other_user):
            task = TaskFactory(owner=owner, project=None)
            services.complete_task(task, by=owner)
            assert deliver("memory", OutboxEvent.objects.latest("id")) == {"succeeded": 1}
        assert server.tenants("TaskMemory") == {tenant_of(user.pk), tenant_of(other_user.pk)}
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = client_for(user).delete("/api/me/", {"password": PASSWORD}, format="json")
            # Before the commit, Weaviate is untouched: a rolled-back delete would keep the memories.
            assert server.tenants("TaskMemory") == {tenant_of(user.pk), tenant_of(other_user.pk)}
        assert response.status_code == 204
        assert callbacks
        assert server.tenants("TaskMemory") == {tenant_of(other_user.pk)}
        assert ("DELETE", "/v1/schema/TaskMemory/tenants") in server.rest_calls
        # Idempotent: dropping it again (the retry command) is no error.
        call_command("memory", "forget-user", str(user.pk))
        assert server.tenants("TaskMemory") == {tenant_of(other_user.pk)}
    finally:
        vectorstores.get_store().close()
        vectorstores.get_store.cache_clear()
        server.close()


def test_weaviate_away_at_delete_is_logged_and_the_command_retries(
    settings, user: Any, django_capture_on_commit_callbacks, monkeypatch, caplog
) -> None:
    server = FakeWeaviate()
    monkeypatch.setattr(fake_weaviate_module._RESTHandler, "do_DELETE", _fake_delete_tenants, raising=False)
    settings.MEMORY_STORE = "weaviate"
    settings.WEAVIATE_URL = server.url
    settings.WEAVIATE_GRPC_PORT = server.grpc_port
    vectorstores.get_store.cache_clear()
    try:
        task = TaskFactory(owner=user, project=None)
        services.complete_task(task, by=user)
        assert deliver("memory", OutboxEvent.objects.latest("id")) == {"succeeded": 1}

        # Weaviate goes away: nothing listens on its address any more.
        vectorstores.get_store().close()
        vectorstores.get_store.cache_clear()
        settings.WEAVIATE_URL = f"http://127.0.0.1:{unused_port()}"
        with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
            response = client_for(user).delete("/api/me/", {"password": PASSWORD}, format="json")
        assert response.status_code == 204  # the account is gone all the same
        assert not User.objects.filter(pk=user.pk).exists()
        assert f"manage.py memory forget-user {user.pk}" in caplog.text
        assert server.tenants("TaskMemory") == {tenant_of(user.pk)}
        # Back again: the command the log names finishes the job.
        vectorstores.get_store.cache_clear()
        settings.WEAVIATE_URL = server.url
        call_command("memory", "forget-user", str(user.pk))
        assert server.tenants("TaskMemory") == set()
    finally:
        vectorstores.get_store().close()
        vectorstores.get_store.cache_clear()
        server.close()


def test_forget_user_refuses_a_user_who_still_exists(user: Any) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="still exists"):
        call_command("memory", "forget-user", str(user.pk))


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fake_delete_tenants(self: Any) -> None:
    """DELETE /v1/schema/{collection}/tenants, as Weaviate answers it: 200, missing ones ignored."""
    fake: FakeWeaviate = self.server.fake
    names = self.body()
    fake.rest_calls.append(("DELETE", self.path))
    parts = self.path.split("/")
    if len(parts) == 5 and parts[2] == "schema" and parts[4] == "tenants":
        with fake.lock:
            for name in names:
                fake.objects.pop((parts[3], name), None)
        self.reply(200, [])
    else:
        self.reply(404, {"error": [{"message": f"fake weaviate has no DELETE {self.path}"}]})


# --- export -----------------------------------------------------------------------------------
def export_of(client: APIClient) -> tuple[Any, dict[str, Any], bytes]:
    response = client.get("/api/me/export/")
    assert response.status_code == 200
    assert response.streaming
    raw = b"".join(response.streaming_content)
    return response, json.loads(raw), raw


def test_export_round_trips_everything_of_the_caller_and_nothing_else(
    api: APIClient, user: Any, other_user: Any
) -> None:
    mine, theirs = make_everything(user), make_everything(other_user)
    response, document, raw = export_of(api)
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert document["format"] == "selfos-export" and document["version"] == 1
    assert document["profile"]["username"] == user.username
    assert document["profile"]["date_joined"]
    assert document["preferences"]["time_zone"] == "Europe/Paris"
    for kind in export.SECTIONS[:-1]:  # all but memory entries, whose id is their task's
        assert {str(row["id"]) for row in document[kind]} == mine.ids[kind], kind
    assert {row["task_id"] for row in document["memory_entries"]} == mine.ids["memory_entries"]
    assert {m["id"] for task in document["tasks"] for m in task["media"]} == mine.ids["media"]
    assert any(n["pushes"] for n in document["notifications"])
    # The content, not only the ids: what the user wrote and what was made of it.
    done = next(t for t in document["tasks"] if t["title"].startswith("Bake bread"))
    assert done["status"] == "completed" and done["media"][0]["caption"] == "the loaf"
    assert any("Bake bread" in row["text"] for row in document["memory_entries"])
    assert all("embedding" not in row for row in document["memory_entries"])
    # Device tokens are redacted but recognisable.
    assert mine.device_token.encode() not in raw
    assert document["devices"][0]["token"] == "…" + mine.device_token[-6:]
    # Nothing of the other user's, anywhere in the document.
    for other_id in all_ids(theirs):
        assert other_id.encode() not in raw, other_id
    assert b"Bake bread (" + other_user.username.encode() + b")" not in raw


def test_export_of_a_new_account_is_a_complete_empty_document(api: APIClient, user: Any) -> None:
    _, document, _ = export_of(api)
    assert document["preferences"] is None
    assert all(document[kind] == [] for kind in ("goals", "tasks", "devices", "memory_entries"))
