"""The whole system: API -> outbox -> relay -> a real Celery worker -> all four subscribers."""

import pytest
from rest_framework.test import APIClient

from outbox import services as outbox_services
from outbox.models import Delivery, OutboxEvent
from workers.models import MemoryEntry, Notification, ProgressSnapshot, PushReceipt, StorySegment

from .conftest import client_for, settle
from .factories import UserFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PRODUCT = ("progress", "story", "notifications", "memory")


def all_succeeded() -> bool:
    return (
        not OutboxEvent.objects.filter(status="pending").exists()
        and not Delivery.objects.exclude(status="succeeded").exists()
    )


def effects(fcm) -> tuple:
    """Everything the four subscribers left behind, to compare before and after a replay."""
    return (
        sorted(ProgressSnapshot.objects.values_list("event_id", "percent")),
        sorted(StorySegment.objects.values_list("text", flat=True)),
        Notification.objects.count(),
        PushReceipt.objects.count(),
        len(fcm.delivered),
        sorted(str(t) for t in MemoryEntry.objects.values_list("task_id", flat=True)),
    )


def test_completing_tasks_through_the_api_reaches_all_four_subscribers(
    celery_worker, use_subscribers, fcm
) -> None:
    use_subscribers(*PRODUCT)
    user = UserFactory()
    api: APIClient = client_for(user)
    for token in ("phone-token", "tablet-token"):
        assert api.post("/api/devices/", {"token": token, "platform": "android"}).status_code == 201
    api.post("/api/devices/", {"token": "watch-token", "platform": "ios"})

    goal = api.post("/api/goals/", {"title": "Run a marathon"}).json()
    project = api.post("/api/projects/", {"title": "Base training", "goal": goal["id"]}).json()
    first = api.post("/api/tasks/", {"title": "Long run by the river", "project": project["id"]}).json()
    last = api.post("/api/tasks/", {"title": "Interval session", "project": project["id"]}).json()
    media = api.post(
        f"/api/tasks/{first['id']}/media/",
        {"kind": "image", "url": "https://media.example/river.jpg", "caption": "fog over the river at dawn"},
    )
    assert media.status_code == 201

    assert api.put(f"/api/tasks/{first['id']}/complete/").status_code == 200
    settle(all_succeeded, timeout=60)

    progress = api.get(f"/api/projects/{project['id']}/progress/").json()
    assert progress["percent"] == "50.00" and progress["tasks_done"] == 1
    assert len(progress["history"]) == 1 and progress["history"][0]["percent"] == "50.00"
    [segment] = api.get("/api/story/").json()["results"]
    assert "fog over the river at dawn" in segment["text"]
    assert segment["media"][0]["caption"] == "fog over the river at dawn"
    [notification] = api.get("/api/notifications/").json()["results"]
    assert notification["body"] == "🎉 You completed “Long run by the river”!"
    for token in ("phone-token", "tablet-token", "watch-token"):
        assert len(fcm.delivered_to(token)) == 1, token
    results = api.get("/api/memory/search/", {"q": "running near water"}).json()["results"]
    assert results[0]["title"] == "Long run by the river"

    # The last task of the project: project.completed and goal.reached follow.
    assert api.post(f"/api/tasks/{last['id']}/complete").status_code == 200  # the seed's path, POST
    settle(lambda: all_succeeded() and OutboxEvent.objects.filter(type="goal.reached").exists(), timeout=60)
    settle(all_succeeded, timeout=60)
    assert api.get(f"/api/projects/{project['id']}/").json()["status"] == "completed"
    assert api.get(f"/api/goals/{goal['id']}/").json()["status"] == "reached"
    kinds = sorted(s["kind"] for s in api.get("/api/story/").json()["results"])
    assert kinds == ["goal", "project", "task", "task"]
    bodies = [n["body"] for n in api.get("/api/notifications/").json()["results"]]
    assert any(b.startswith("🏁") for b in bodies) and any(b.startswith("🏆") for b in bodies)
    assert len(bodies) == 4
    assert len(fcm.delivered_to("phone-token")) == 4  # one per notification, never more

    # Replaying each subscriber over the same events changes nothing.
    before = effects(fcm)
    for name in PRODUCT:
        assert outbox_services.replay(name) > 0
    settle(all_succeeded, timeout=60)
    assert effects(fcm) == before
    assert OutboxEvent.objects.filter(type="project.completed").count() == 1
    assert OutboxEvent.objects.filter(type="goal.reached").count() == 1
