"""A worker killed (kill -9) between FCM's send and the PushReceipt write: the push may go out again
on the retry, but only under the same collapse id, so the device shows it once."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from outbox import sweeper
from outbox.models import Delivery
from tasks_app import services
from workers.models import Device, Notification, PushReceipt
from workers.queues import Queue

from . import loopback_fcm
from .conftest import WorkerProcess, settle
from .factories import TaskFactory, UserFactory
from .fakes import FakeFCM

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOKEN = "phone"


class PushedTwiceVisibly(AssertionError):
    """One notification pushed to one device under different collapse ids: the device shows each."""


def collapse_ids(push: dict[str, Any]) -> set[str]:
    """Every collapse id a push carries: Android's tag and collapse key, APNs' apns-collapse-id."""
    android, apns = push["android"], push["apns"]
    return {android["notification"]["tag"], android["collapse_key"], apns["headers"]["apns-collapse-id"]}


def test_a_worker_killed_between_the_fcm_send_and_the_receipt_pushes_again_only_under_one_collapse_id(
    start_celery_worker: Callable[..., Any],
    worker_process: Callable[..., WorkerProcess],
    use_subscribers: Callable[..., None],
    fcm: FakeFCM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_subscribers("notifications")
    start_celery_worker("outbox")  # the relay, in this process
    for name, value in loopback_fcm.worker_env(fcm).items():
        monkeypatch.setenv(name, value)  # the worker processes push through firebase-admin to `fcm`
    user = UserFactory()
    Device.objects.create(owner=user, token=TOKEN, platform=Device.Platform.ANDROID)
    held = fcm.hold(TOKEN)
    doomed = worker_process(Queue.NOTIFICATIONS)
    services.complete_task(TaskFactory(owner=user), by=user)

    assert held.reached.wait(30), doomed.output()  # FCM has the push and holds its answer
    delivery = Delivery.objects.get(subscriber="notifications")
    # Nothing of the worker's transaction is committed: no notification, no receipt, no success.
    assert delivery.status == Delivery.Status.DISPATCHED
    assert not Notification.objects.exists() and not PushReceipt.objects.exists()
    os.killpg(doomed.process.pid, signal.SIGKILL)  # kill -9, parent and pool children
    doomed.process.wait(10)
    held.release()  # FCM's answer goes nowhere

    worker_process(Queue.NOTIFICATIONS)
    assert sweeper.sweep(lease_seconds=0)["expired"] == 1  # re-published (lease forced to 0 here)
    settle(lambda: Delivery.objects.get(pk=delivery.pk).status != Delivery.Status.DISPATCHED, sweep=False)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED, delivery.last_error
    notification = Notification.objects.get()  # exactly one in-app notification
    receipt = PushReceipt.objects.get()
    assert (receipt.notification_id, receipt.device.token, receipt.status) == (notification.pk, TOKEN, "sent")
    pushes = fcm.delivered_to(TOKEN)
    assert 1 <= len(pushes) <= 2, pushes  # the held push, and at most one more from the retry
    # One push, or a repeat the device folds into the first: all carry one and the same collapse id.
    carried = [collapse_ids(p) for p in pushes]
    if len(set().union(*carried)) != 1:
        raise PushedTwiceVisibly(f"the pushes to {TOKEN} for notification {notification.pk} carry {carried}")
