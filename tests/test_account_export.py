"""GET /api/me/export/: all of the caller's data, streamed, and nothing of anyone else's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from selfos.accounts import export

from .account_data import (
    all_ids,
    make_everything,
)

pytestmark = pytest.mark.django_db


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
    for kind in set(export.sections(user.pk)) - {"memory_entries", "events"}:
        assert {str(row["id"]) for row in document[kind]} == mine.ids[kind], kind
    # A memory entry's id is its task's; an event's, the outbox event's.
    assert {row["task_id"] for row in document["memory_entries"]} == mine.ids["memory_entries"]
    assert {str(row["event_id"]) for row in document["events"]} == mine.ids["events"]
    assert [row["committed_at"] for row in document["events"]] == sorted(
        r["committed_at"] for r in document["events"]
    )
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
    assert all(document[kind] == [] for kind in ("goals", "tasks", "devices", "memory_entries", "events"))
