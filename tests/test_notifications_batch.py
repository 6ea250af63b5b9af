"""Notifications, many deliveries at once (workers/notifications/batch.py): the same notifications
and exactly one push per device as one by one, with one push call and a constant number of
queries per batch; quiet hours, devices to retry and unreadable events go one by one."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from outbox.api import publish
from outbox.delivery import run_deliveries
from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Task
from workers.events import GOAL_REACHED, PROJECT_COMPLETED
from workers.models import Device, Notification, Preferences, PushReceipt
from workers.notifications import push
from workers.notifications.content import notification_id

from . import fakes
from .deliveries import dispatched
from .factories import GoalFactory, ProjectFactory, TaskFactory, UserFactory
from .fakes import FakeFCM

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _only_the_given_deliveries(settings: Any) -> None:
    """Each batch is exactly the deliveries a test names: none taken while waiting."""
    settings.OUTBOX = {**settings.OUTBOX, "TAKE_WAITING": False}


@pytest.fixture
def send_each_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each firebase-admin `send_each` call (one HTTP request a message reaches FCM)."""
    from firebase_admin import messaging

    calls: list[int] = []
    real = messaging.send_each

    def counting(messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(len(messages))
        return real(messages, *args, **kwargs)

    monkeypatch.setattr(messaging, "send_each", counting)
    return calls


def complete(task: Task) -> OutboxEvent:
    services.complete_task(task, by=task.owner)
    return OutboxEvent.objects.filter(aggregate_id=str(task.pk), type="task.completed").latest("id")


def completions(owners: Iterable[Any]) -> list[OutboxEvent]:
    return [complete(TaskFactory(owner=owner, title=f"Task {i}")) for i, owner in enumerate(owners)]


def with_devices(*tokens: str) -> Any:
    user = UserFactory()
    for token in tokens:
        Device.objects.create(owner=user, token=token, platform="android")
    return user


def run(delivery_ids: list[int]) -> dict[str, int]:
    """One message carrying these deliveries, through the real delivery wrapper; its counts by outcome."""
    return run_deliveries("notifications", delivery_ids)


def run_batch(events: Iterable[OutboxEvent]) -> dict[str, int]:
    return run(dispatched("notifications", events))


def delivery_of(event: OutboxEvent) -> Delivery:
    return Delivery.objects.get(event=event, subscriber="notifications")


def test_a_batch_notifies_once_per_event_and_pushes_once_per_device_in_one_call(
    fcm: FakeFCM, send_each_calls: list[int]
) -> None:
    ann, bob, cid = with_devices("ann-phone", "ann-tablet"), with_devices("bob-phone"), UserFactory()
    events = completions([ann, bob, ann, cid, bob])
    assert run_batch(events) == {"succeeded": 5}

    assert send_each_calls == [6]  # one call: 2 events x 2 devices of ann's, 2 x 1 of bob's
    assert len(fcm.delivered) == 6
    assert {t: len(fcm.delivered_to(t)) for t in ("ann-phone", "ann-tablet", "bob-phone")} == {
        "ann-phone": 2,
        "ann-tablet": 2,
        "bob-phone": 2,
    }
    # The very rows one by one makes: keyed by event, ids from the event, the same words.
    for event in events:
        n = Notification.objects.get(event_id=event.id)
        task = Task.objects.get(pk=event.payload["task_id"])
        assert (n.pk, n.owner_id, n.kind) == (notification_id(event.id), task.owner_id, "task.completed")
        assert (n.title, n.body, n.data) == (
            "Task completed",
            f"🎉 You completed “{task.title}”!",
            {"task_id": str(task.pk)},
        )
        pushed = [m for m in fcm.delivered if m["data"]["notification_id"] == str(n.pk)]
        assert {m["android"]["notification"]["tag"] for m in pushed} <= {str(n.pk)}
    assert PushReceipt.objects.filter(status="sent").count() == 6
    assert not Notification.objects.filter(push_due_at__isnull=False).exists()


def test_projects_and_goals_in_the_same_batch(send_each_calls: list[int], fcm: FakeFCM) -> None:
    user = with_devices("phone")
    project, goal = ProjectFactory(owner=user, title="Garden"), GoalFactory(owner=user, title="Fit")
    with transaction.atomic():
        events = [
            publish(PROJECT_COMPLETED, project, {"project_id": str(project.pk), "user_id": user.pk}),
            publish(GOAL_REACHED, goal, {"goal_id": str(goal.pk), "user_id": user.pk}),
        ]
    events.append(complete(TaskFactory(owner=user, title="Dig")))
    assert run_batch(events) == {"succeeded": 3}
    assert sorted(Notification.objects.values_list("body", flat=True)) == [
        "🎉 You completed “Dig”!",
        "🏁 “Garden” is done.",
        "🏆 You reached “Fit”!",
    ]
    assert send_each_calls == [3] and len(fcm.delivered_to("phone")) == 3


def test_the_queries_of_a_batch_do_not_grow_with_it() -> None:
    def queries(n: int) -> int:
        owners = [with_devices(f"{n}-{i}-phone", f"{n}-{i}-tablet") for i in range(n // 5)]
        Preferences.objects.create(user=owners[0], time_zone="Europe/Paris")  # one with preferences
        ids = dispatched("notifications", completions(owners[i % len(owners)] for i in range(n)))
        with CaptureQueriesContext(connection) as captured:
            assert run(ids) == {"succeeded": n}
        return len(captured)

    small, large = queries(5), queries(40)
    assert small == large, (small, large)
    assert len(push.sent) == 2 * 5 + 2 * 40
    assert Notification.objects.count() == 45


def test_replaying_the_same_deliveries_pushes_nothing_new(fcm: FakeFCM, send_each_calls: list[int]) -> None:
    ann, bob = with_devices("ann-phone"), with_devices("bob-phone", "bob-tablet")
    events = completions([ann, bob, bob])
    assert run_batch(events) == {"succeeded": 3}
    assert run_batch(events) == {"succeeded": 3}  # a duplicated message, or a replay
    assert send_each_calls == [5]  # the replay had nothing to push: no call at all
    assert len(fcm.delivered) == 5 and Notification.objects.count() == 3
    assert PushReceipt.objects.count() == 5


def test_a_user_in_quiet_hours_is_deferred_while_the_others_are_pushed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeper, awake = with_devices("sleeper-phone"), with_devices("awake-phone")
    Preferences.objects.create(
        user=sleeper, time_zone="Europe/Paris", quiet_hours_start=time(22), quiet_hours_end=time(7)
    )
    Preferences.objects.create(user=awake, time_zone="Europe/Paris")
    at_night = datetime(2026, 11, 29, 23, 30, tzinfo=ZoneInfo("Europe/Paris"))
    morning = datetime(2026, 11, 30, 7, 0, tzinfo=ZoneInfo("Europe/Paris"))
    monkeypatch.setattr(timezone, "now", lambda: at_night)
    quiet_event, pushed_event, other_pushed = completions([sleeper, awake, awake])
    assert run_batch([quiet_event, pushed_event, other_pushed]) == {"succeeded": 2, "deferred": 1}

    assert [m.token for m in push.sent] == ["awake-phone", "awake-phone"]
    assert Notification.objects.count() == 3  # the in-app one is there at once, quiet or not
    assert Notification.objects.get(event_id=quiet_event.id).push_due_at == morning
    delivery = delivery_of(quiet_event)
    # Waiting through the outbox, as one by one: no attempt used, none recorded.
    assert (delivery.status, delivery.next_attempt_at, delivery.attempts) == ("pending", morning, 0)
    assert not delivery.attempt_log.exists()
    assert delivery_of(pushed_event).status == delivery_of(other_pushed).status == "succeeded"

    monkeypatch.setattr(timezone, "now", lambda: morning + timedelta(minutes=1))
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.DISPATCHED)  # as the sweeper does
    assert run([delivery.pk]) == {"succeeded": 1}
    assert [m.token for m in push.sent][-1] == "sleeper-phone" and len(push.sent) == 3
    assert Notification.objects.get(event_id=quiet_event.id).push_due_at is None


def test_a_device_to_retry_is_retried_alone(fcm: FakeFCM, send_each_calls: list[int]) -> None:
    ann, bob = with_devices("busy", "fine"), with_devices("bob-phone")
    fcm.plan("busy", fakes.QUOTA, fakes.QUOTA)
    ann_event, bob_event = completions([ann, bob])
    assert run_batch([ann_event, bob_event]) == {"succeeded": 1, "retry": 1}

    # The batch's push failed for "busy"; the one-by-one pass tried it alone, and recorded that.
    assert send_each_calls == [3, 1]
    delivery = delivery_of(ann_event)
    assert delivery.status == "pending" and "must be retried" in delivery.last_error
    assert delivery.attempts == 1 and delivery.attempt_log.count() == 1
    assert set(PushReceipt.objects.values_list("device__token", flat=True)) == {"fine", "bob-phone"}

    assert run_batch([ann_event]) == {"succeeded": 1}  # the retry, when due
    assert fcm.attempts == {"busy": 3, "fine": 1, "bob-phone": 1}
    assert {t: len(fcm.delivered_to(t)) for t in ("busy", "fine", "bob-phone")} == {
        "busy": 1,
        "fine": 1,
        "bob-phone": 1,
    }


def test_an_invalid_token_deactivates_its_device(fcm: FakeFCM, send_each_calls: list[int]) -> None:
    user = with_devices("gone", "fine")
    fcm.plan("gone", fakes.UNREGISTERED, fakes.UNREGISTERED)
    assert run_batch(completions([user, user])) == {"succeeded": 2}
    assert dict(Device.objects.values_list("token", "active")) == {"gone": False, "fine": True}
    assert "UnregisteredError" in Device.objects.get(token="gone").deactivated_reason
    assert sorted(PushReceipt.objects.values_list("device__token", "status")) == [
        ("fine", "sent"),
        ("fine", "sent"),
        ("gone", "invalid"),
        ("gone", "invalid"),
    ]
    assert run_batch(completions([user])) == {"succeeded": 1}  # no longer pushed to
    assert fcm.attempts["gone"] == 2 and send_each_calls == [4, 1]


def test_an_unreadable_event_fails_alone(fcm: FakeFCM) -> None:
    user = with_devices("phone")
    good, bad, also_good = completions([user, user, user])
    OutboxEvent.objects.filter(pk=bad.pk).update(payload={"task_id": bad.payload["task_id"]})
    assert run_batch([good, bad, also_good]) == {"succeeded": 2, "dead": 1}
    assert "lacks user_id" in delivery_of(bad).last_error
    assert set(Notification.objects.values_list("event_id", flat=True)) == {good.id, also_good.id}
    assert len(fcm.delivered_to("phone")) == 2


def test_a_batch_that_raises_is_run_one_by_one_without_pushing_twice(
    fcm: FakeFCM, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, bob = with_devices("ann-phone"), with_devices("bob-phone")
    real = push.FCMBackend.send
    calls: list[int] = []

    def flaky(self: push.FCMBackend, messages: list[push.PushMessage]) -> list[push.PushResult]:
        calls.append(len(messages))
        results = real(self, messages)
        if len(calls) == 1:
            raise ConnectionError("lost the answer")  # sent, but the batch never hears of it
        return results

    monkeypatch.setattr(push.FCMBackend, "send", flaky)
    events = completions([ann, bob])
    assert run_batch(events) == {"succeeded": 2}
    assert calls == [2, 1, 1]  # the batch, then each event alone
    # Sent again (the batch wrote no receipt), but under the same notification and collapse id.
    for token in ("ann-phone", "bob-phone"):
        tags = {m["android"]["notification"]["tag"] for m in fcm.delivered_to(token)}
        assert len(fcm.delivered_to(token)) == 2 and len(tags) == 1
    assert Notification.objects.count() == 2 and PushReceipt.objects.count() == 2


def test_a_subject_deleted_before_the_batch_gets_no_notification() -> None:
    user = with_devices("phone")
    kept, gone = (TaskFactory(owner=user, title=t) for t in ("kept", "gone"))
    events = [complete(kept), complete(gone)]
    services.delete_task(Task.objects.get(pk=gone.pk))
    assert run_batch(events) == {"succeeded": 2}
    assert list(Notification.objects.values_list("data", flat=True)) == [{"task_id": str(kept.pk)}]
    assert [m.body for m in push.sent] == ["🎉 You completed “kept”!"]


def test_deletes_forget_their_notifications_in_a_batch() -> None:
    ann, bob = with_devices("ann-phone"), with_devices("bob-phone")
    tasks = [TaskFactory(owner=owner) for owner in (ann, ann, bob)]
    assert run_batch([complete(t) for t in tasks]) == {"succeeded": 3}
    assert PushReceipt.objects.count() == 3
    for task in tasks:
        services.delete_task(Task.objects.get(pk=task.pk))
    late = TaskFactory(owner=bob)
    deletes = list(OutboxEvent.objects.filter(type="task.deleted").order_by("id"))
    ids = dispatched("notifications", [*deletes, complete(late)])
    with CaptureQueriesContext(connection) as captured:
        assert run(ids) == {"succeeded": 4}
    assert list(Notification.objects.values_list("data", flat=True)) == [{"task_id": str(late.pk)}]
    assert PushReceipt.objects.count() == 1
    assert len(captured) < 40, [q["sql"][:80] for q in captured]


def test_a_batch_leaves_the_same_rows_as_one_by_one(fcm: FakeFCM) -> None:
    ann, bob, off = with_devices("ann-phone", "ann-gone"), with_devices("bob-phone"), with_devices("off")
    Preferences.objects.create(user=off, push_enabled=False)
    project = ProjectFactory(owner=bob, title="Garden")
    with transaction.atomic():
        published = publish(PROJECT_COMPLETED, project, {"project_id": str(project.pk), "user_id": bob.pk})
    events = [*completions([ann, bob, off, ann]), published]

    def outcome() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[str, bool]]]:
        notifications = list(
            Notification.objects.order_by("event_id").values_list(
                "id", "event_id", "owner_id", "kind", "title", "body", "data", "push_due_at"
            )
        )
        receipts = list(
            PushReceipt.objects.order_by("notification__event_id", "device__token").values_list(
                "notification_id", "device__token", "status"
            )
        )
        return notifications, receipts, list(Device.objects.order_by("token").values_list("token", "active"))

    fcm.plan("ann-gone", fakes.UNREGISTERED, fakes.UNREGISTERED)
    assert run_batch(events) == {"succeeded": 5}
    batched, batched_pushes = outcome(), len(fcm.delivered)

    Notification.objects.all().delete()  # receipts cascade
    Device.objects.update(active=True, deactivated_reason="")
    fcm.reset()
    fcm.plan("ann-gone", fakes.UNREGISTERED)  # one by one, the second event finds it deactivated
    for event in events:
        assert run_batch([event]) == {"succeeded": 1}
    one_by_one = outcome()

    assert batched[0] == one_by_one[0] and batched[2] == one_by_one[2]
    # The same receipts, but for the dead token: the batch pushed to it for both of ann's events
    # (both went in the one call that told it dead), one by one only for the first.
    assert [r for r in batched[1] if r[1] != "ann-gone"] == [r for r in one_by_one[1] if r[1] != "ann-gone"]
    assert [r[2] for r in batched[1] if r[1] == "ann-gone"] == ["invalid", "invalid"]
    assert [r[2] for r in one_by_one[1] if r[1] == "ann-gone"] == ["invalid"]
    assert batched_pushes == len(fcm.delivered) == 4  # ann x2, bob's task and project; none to "off"
