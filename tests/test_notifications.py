"""Notifications: in-app once per event, push once per active device, FCM semantics, quiet hours."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from outbox import sweeper
from outbox.delivery import run_deliveries
from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Task
from workers.models import Device, Notification, Preferences, PushReceipt
from workers.notifications import handler as notifications
from workers.notifications import push

from . import fakes
from .conftest import deliver
from .factories import TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


def complete(task: Task) -> OutboxEvent:
    services.complete_task(task, by=task.owner)
    return OutboxEvent.objects.filter(aggregate_id=str(task.pk)).latest("id")


def devices(user, *tokens: str) -> list[Device]:
    return [Device.objects.create(owner=user, token=t, platform="android") for t in tokens]


def test_one_in_app_notification_and_one_push_per_active_device(user) -> None:
    devices(user, "phone", "tablet")
    Device.objects.create(owner=user, token="old", platform="ios", active=False)
    event = complete(TaskFactory(owner=user, title="Paint the fence"))
    assert deliver("notifications", event) == {"succeeded": 1}
    deliver("notifications", event)  # repeated: nothing new
    notification = Notification.objects.get()
    assert (
        notification.title == "Task completed" and notification.body == "🎉 You completed “Paint the fence”!"
    )
    assert sorted(m.token for m in push.sent) == ["phone", "tablet"]
    assert PushReceipt.objects.filter(status="sent").count() == 2


def test_push_through_fcm_reaches_each_device(user, fcm) -> None:
    devices(user, "phone", "tablet")
    event = complete(TaskFactory(owner=user, title="Ship it"))
    assert deliver("notifications", event) == {"succeeded": 1}
    notification = Notification.objects.get()
    [message] = fcm.delivered_to("phone")
    assert message["notification"] == {"title": "Task completed", "body": "🎉 You completed “Ship it”!"}
    assert message["data"]["notification_id"] == str(notification.pk)
    assert message["android"]["notification"]["tag"] == str(notification.pk)
    assert message["apns"]["headers"]["apns-collapse-id"] == str(notification.pk)
    assert len(fcm.delivered_to("tablet")) == 1
    receipt = PushReceipt.objects.get(device__token="phone")
    assert receipt.provider_message_id.startswith("projects/selfos-test/messages/")


def test_unregistered_and_mismatched_tokens_deactivate_their_device(user, fcm) -> None:
    devices(user, "gone", "foreign", "fine")
    fcm.plan("gone", fakes.UNREGISTERED)
    fcm.plan("foreign", fakes.SENDER_MISMATCH)
    assert deliver("notifications", complete(TaskFactory(owner=user))) == {"succeeded": 1}
    active = dict(Device.objects.values_list("token", "active"))
    assert active == {"gone": False, "foreign": False, "fine": True}
    assert "UnregisteredError" in Device.objects.get(token="gone").deactivated_reason
    assert dict(PushReceipt.objects.values_list("device__token", "status")) == {
        "gone": "invalid",
        "foreign": "invalid",
        "fine": "sent",
    }


@pytest.mark.parametrize("failure", [fakes.QUOTA, fakes.UNAVAILABLE], ids=["quota-429", "unavailable-5xx"])
def test_quota_and_unavailable_retry_without_pushing_twice(user, fcm, failure) -> None:
    devices(user, "busy", "fine")
    fcm.plan("busy", failure, failure)
    event = complete(TaskFactory(owner=user))
    assert deliver("notifications", event) == {"retry": 1}
    delivery = Delivery.objects.get(event=event, subscriber="notifications")
    assert delivery.status == "pending" and "must be retried" in delivery.last_error
    assert Notification.objects.count() == 1  # the in-app one is there at once
    assert deliver("notifications", event) == {"retry": 1}
    assert deliver("notifications", event) == {"succeeded": 1}
    assert len(fcm.delivered_to("fine")) == 1  # not pushed again by the retries
    assert len(fcm.delivered_to("busy")) == 1
    assert fcm.attempts["busy"] == 3 and fcm.attempts["fine"] == 1


def test_a_503_is_retried_by_the_client_itself(user, fcm) -> None:
    devices(user, "phone")
    fcm.plan("phone", fakes.RETRIED_BY_CLIENT)
    assert deliver("notifications", complete(TaskFactory(owner=user))) == {"succeeded": 1}
    assert fcm.attempts["phone"] == 2 and len(fcm.delivered_to("phone")) == 1


def test_an_invalid_message_fails_for_that_device_only(user, fcm) -> None:
    devices(user, "odd", "fine")
    fcm.plan("odd", fakes.INVALID)
    assert deliver("notifications", complete(TaskFactory(owner=user))) == {"succeeded": 1}
    assert dict(PushReceipt.objects.values_list("device__token", "status")) == {
        "odd": "failed",
        "fine": "sent",
    }
    assert Device.objects.get(token="odd").active


def test_push_can_be_switched_off(user) -> None:
    Preferences.objects.create(user=user, push_enabled=False)
    devices(user, "phone")
    deliver("notifications", complete(TaskFactory(owner=user)))
    assert Notification.objects.count() == 1
    assert push.sent == []


def test_quiet_hours_delay_the_push_until_they_end(user, monkeypatch) -> None:
    Preferences.objects.create(
        user=user, time_zone="Europe/Paris", quiet_hours_start=time(22), quiet_hours_end=time(7)
    )
    devices(user, "phone")
    at_night = datetime(2026, 11, 29, 23, 30, tzinfo=ZoneInfo("Europe/Paris"))
    morning = datetime(2026, 11, 30, 7, 0, tzinfo=ZoneInfo("Europe/Paris"))
    monkeypatch.setattr(timezone, "now", lambda: at_night)
    event = complete(TaskFactory(owner=user))
    assert deliver("notifications", event) == {"deferred": 1}
    notification = Notification.objects.get()  # the in-app notification is there at once
    assert push.sent == []
    assert notification.push_due_at == morning
    delivery = Delivery.objects.get(event=event, subscriber="notifications")
    # Waiting through the outbox, not a retry: no attempt used, none recorded.
    assert (delivery.status, delivery.next_attempt_at, delivery.attempts) == ("pending", morning, 0)
    assert not delivery.attempt_log.exists()

    published: list[tuple[str, int]] = []
    monkeypatch.setattr("outbox.dispatch.publish_deliveries", published.extend)
    assert sweeper.sweep()["retries"] == 0  # still night: nothing is due
    monkeypatch.setattr(timezone, "now", lambda: morning + timedelta(minutes=1))
    assert sweeper.sweep()["retries"] == 1
    assert published == [("notifications", delivery.id)]
    assert run_deliveries("notifications", [delivery.id]) == {"succeeded": 1}
    assert [m.token for m in push.sent] == ["phone"]
    notification.refresh_from_db()
    assert notification.push_due_at is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)


@pytest.mark.parametrize(
    ("start", "end", "local", "quiet"),
    [(22, 7, 23, True), (22, 7, 3, True), (22, 7, 12, False), (13, 14, 13, True), (13, 14, 14, False)],
)
def test_quiet_hours_windows(user, start: int, end: int, local: int, quiet: bool) -> None:
    prefs = Preferences.objects.create(user=user, quiet_hours_start=time(start), quiet_hours_end=time(end))
    now = datetime(2026, 11, 29, local, 0, tzinfo=ZoneInfo("UTC"))
    assert (notifications.quiet_hours_end(prefs, now) is not None) == quiet


def test_notifications_api_unread_first_and_read(api: APIClient, user, other_api: APIClient) -> None:
    for title in ("one", "two", "three"):
        deliver("notifications", complete(TaskFactory(owner=user, title=title)))
    listed = api.get("/api/notifications/").json()
    assert listed["results"][0]["body"].endswith("“three”!")
    oldest = listed["results"][-1]
    read = api.post(f"/api/notifications/{oldest['id']}/read/")
    assert read.status_code == 200 and read.json()["read_at"]
    assert api.post(f"/api/notifications/{oldest['id']}/read/").json()["read_at"] == read.json()["read_at"]
    after = api.get("/api/notifications/").json()["results"]
    assert after[-1]["id"] == oldest["id"] and all(n["read_at"] is None for n in after[:-1])
    assert other_api.post(f"/api/notifications/{oldest['id']}/read/").status_code == 404
    assert other_api.get("/api/notifications/").json()["count"] == 0


def test_devices_api_registers_takes_over_and_removes(api: APIClient, user, other_api: APIClient) -> None:
    created = api.post("/api/devices/", {"token": "tok-1", "platform": "android"})
    assert created.status_code == 201
    again = api.post("/api/devices/", {"token": "tok-1", "platform": "android"})
    assert again.status_code == 201 and again.json()["id"] == created.json()["id"]  # 201 whatever was known
    taken = other_api.post("/api/devices/", {"token": "tok-1", "platform": "ios"})
    assert taken.status_code == 201 and taken.json()["id"] != created.json()["id"]
    # The first account keeps its device, deactivated (tests/test_devices.py has the rest).
    assert [d["active"] for d in api.get("/api/devices/").json()["results"]] == [False]
    device_id = taken.json()["id"]
    assert api.delete(f"/api/devices/{device_id}/").status_code == 404
    assert other_api.delete(f"/api/devices/{device_id}/").status_code == 204
    bad = api.post("/api/devices/", {"token": "", "platform": "blackberry"})
    assert bad.status_code == 400 and set(bad.json()) == {"token", "platform"}


def test_preferences_api_validates(api: APIClient) -> None:
    assert api.get("/api/preferences/").json()["time_zone"] == "UTC"
    ok = api.patch(
        "/api/preferences/",
        {"time_zone": "Asia/Tokyo", "quiet_hours_start": "22:00", "quiet_hours_end": "07:00"},
    )
    assert ok.status_code == 200, ok.json()
    assert api.patch("/api/preferences/", {"time_zone": "Mars/Olympus"}).status_code == 400
    assert api.patch("/api/preferences/", {"quiet_hours_start": None}).status_code == 400
    assert api.patch("/api/preferences/", {"push": False}).status_code == 400
    assert api.get("/api/preferences/").json()["time_zone"] == "Asia/Tokyo"


def test_a_notification_for_another_users_event_never_leaks(api: APIClient) -> None:
    other = UserFactory()
    deliver("notifications", complete(TaskFactory(owner=other)))
    assert api.get("/api/notifications/").json()["count"] == 0
