"""The account endpoints: log out, delete the account (and everything derived from it), export it."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessLog
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from outbox import audit
from outbox.delivery import run_deliveries
from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import MediaAttachment
from workers.memory import stores as vectorstores
from workers.memory.weaviate_store import tenant_of
from workers.models import (
    ProgressSnapshot,
    PushReceipt,
)

from .account_data import (
    PASSWORD,
    SUBSCRIBERS,
    User,
    all_ids,
    derived_rows,
    events_mentioning,
    make_everything,
    references_to_user,
)
from .conftest import client_for, deliver
from .factories import TaskFactory
from .fake_weaviate import FakeWeaviate

pytestmark = pytest.mark.django_db


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


@pytest.fixture
def weaviate_memory(settings: Any) -> Iterator[FakeWeaviate]:
    """Memory in Weaviate for one test: the loopback server, and the store pointed at it."""
    server = FakeWeaviate()
    settings.MEMORY_STORE = "weaviate"
    settings.WEAVIATE_URL = server.url
    settings.WEAVIATE_GRPC_PORT = server.grpc_port
    vectorstores.get_store.cache_clear()
    yield server
    vectorstores.get_store().close()
    vectorstores.get_store.cache_clear()
    server.close()


def test_delete_drops_the_weaviate_tenant_after_commit(
    weaviate_memory: FakeWeaviate,
    settings,
    user: Any,
    other_user: Any,
    django_capture_on_commit_callbacks,
) -> None:
    for owner in (user, other_user):
        task = TaskFactory(owner=owner, project=None)
        services.complete_task(task, by=owner)
        assert deliver("memory", OutboxEvent.objects.latest("id")) == {"succeeded": 1}
    assert weaviate_memory.tenants("TaskMemory") == {tenant_of(user.pk), tenant_of(other_user.pk)}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_for(user).delete("/api/me/", {"password": PASSWORD}, format="json")
        # Before the commit, Weaviate is untouched: a rolled-back delete would keep the memories.
        assert weaviate_memory.tenants("TaskMemory") == {tenant_of(user.pk), tenant_of(other_user.pk)}
    assert response.status_code == 204
    assert callbacks
    assert weaviate_memory.tenants("TaskMemory") == {tenant_of(other_user.pk)}
    assert ("DELETE", "/v1/schema/TaskMemory/tenants") in weaviate_memory.rest_calls
    # Idempotent: dropping it again (the retry command) is no error.
    call_command("memory", "forget-user", str(user.pk))
    assert weaviate_memory.tenants("TaskMemory") == {tenant_of(other_user.pk)}


def test_weaviate_away_at_delete_is_logged_and_the_command_retries(
    weaviate_memory: FakeWeaviate,
    settings,
    user: Any,
    django_capture_on_commit_callbacks,
    caplog,
) -> None:
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
    assert weaviate_memory.tenants("TaskMemory") == {tenant_of(user.pk)}
    # Back again: the command the log names finishes the job.
    vectorstores.get_store.cache_clear()
    settings.WEAVIATE_URL = weaviate_memory.url
    call_command("memory", "forget-user", str(user.pk))
    assert weaviate_memory.tenants("TaskMemory") == set()


def test_forget_user_refuses_a_user_who_still_exists(user: Any) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="still exists"):
        call_command("memory", "forget-user", str(user.pk))


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
