"""`GET /api/events/`: the caller's own history, newest first, filtered, paginated, documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from tasks_app import services as task_services

from .factories import EventLogFactory, TaskFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def ids(page: dict[str, Any]) -> list[int]:
    return [row["id"] for row in page["results"]]


def test_the_feed_shows_only_the_callers_events_newest_first(
    api: APIClient, user: Any, other_api: APIClient, other_user: Any
) -> None:
    task = TaskFactory(owner=user)
    task_services.complete_task(task, by=user)
    task_services.complete_task(TaskFactory(owner=other_user), by=other_user)
    older = EventLogFactory(owner_id=user.pk, committed_at=T0)
    response = api.get("/api/events/")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [r["type"] for r in rows] == ["task.completed", "task.completed"]
    assert rows[0]["aggregate_id"] == str(task.pk) and rows[1]["id"] == older.event_id
    assert rows[0]["payload"]["user_id"] == user.pk and "owner_id" not in rows[0]
    theirs = other_api.get("/api/events/").json()["results"]
    assert len(theirs) == 1 and theirs[0]["payload"]["user_id"] == other_user.pk
    assert not set(ids(response.json())) & {r["id"] for r in theirs}


def test_the_feed_filters_by_type_and_time(api: APIClient, user: Any, other_user: Any) -> None:
    a = EventLogFactory(owner_id=user.pk, committed_at=T0, type="task.completed")
    b = EventLogFactory(owner_id=user.pk, committed_at=T0 + timedelta(days=1), type="task.reopened")
    c = EventLogFactory(owner_id=user.pk, committed_at=T0 + timedelta(days=2), type="task.completed")
    EventLogFactory(owner_id=other_user.pk, committed_at=T0 + timedelta(days=1), type="task.reopened")
    assert ids(api.get("/api/events/", {"type": "task.completed"}).json()) == [c.event_id, a.event_id]
    assert ids(api.get("/api/events/", {"type": "task.reopened"}).json()) == [b.event_id]
    window = {"since": (T0 + timedelta(hours=1)).isoformat(), "until": (T0 + timedelta(days=2)).isoformat()}
    assert ids(api.get("/api/events/", window).json()) == [b.event_id]
    assert ids(api.get("/api/events/", {"since": T0.isoformat()}).json()) == [
        c.event_id,
        b.event_id,
        a.event_id,
    ]


@pytest.mark.parametrize(
    "query",
    [{"since": "yesterday"}, {"until": "2026-13-45"}, {"since": "2026-03-02", "until": "2026-03-01"}],
)
def test_a_bad_filter_is_a_400_naming_it(api: APIClient, query: dict[str, str]) -> None:
    response = api.get("/api/events/", query)
    assert response.status_code == 400
    assert set(response.json()) & {"since", "until"}


def test_the_feed_pages_by_cursor_without_repeats_or_gaps(api: APIClient, user: Any) -> None:
    # Five events in one instant (one transaction): the event id orders them.
    made = [EventLogFactory(owner_id=user.pk, committed_at=T0).event_id for _ in range(5)]
    made += [
        EventLogFactory(owner_id=user.pk, committed_at=T0 - timedelta(minutes=i)).event_id for i in (1, 2)
    ]
    seen: list[int] = []
    page = api.get("/api/events/", {"page_size": 3}).json()
    while True:
        assert len(page["results"]) <= 3
        seen += ids(page)
        if not page["next"]:
            break
        page = api.get(page["next"]).json()
    assert seen == sorted(made[:5], reverse=True) + made[5:]


def test_the_feed_needs_a_login_and_is_in_the_schema(anon: APIClient) -> None:
    assert anon.get("/api/events/").status_code == 401
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/events/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"type", "since", "until", "cursor", "page_size"}
