"""Operations: /metrics (not public), the outbox health page, structured logs."""

import json
import logging

import pytest
from django.test import Client
from django.utils import timezone

from outbox.models import Delivery, DeliveryAttempt, OutboxEvent

from .factories import TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


def outbox_rows() -> None:
    task = TaskFactory()
    now = timezone.now()
    done = OutboxEvent.objects.create(
        type="task.completed",
        aggregate_type="tasks_app.task",
        aggregate_id=str(task.pk),
        payload={},
        status="dispatched",
        dispatched_at=now,
    )
    OutboxEvent.objects.create(
        type="task.completed", aggregate_type="tasks_app.task", aggregate_id=str(task.pk), payload={}
    )
    ok = Delivery.objects.create(event=done, subscriber="progress", status="succeeded", completed_at=now)
    DeliveryAttempt.objects.create(delivery=ok, number=1, started_at=now, duration_ms=40, outcome="succeeded")
    Delivery.objects.create(
        event=done, subscriber="story", status="dead", last_error="permanent error: no writer"
    )


def test_metrics_from_loopback_show_the_outbox(client: Client) -> None:
    outbox_rows()
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert "outbox_pending_events 1.0" in text
    assert 'outbox_deliveries{status="succeeded",subscriber="progress"} 1.0' in text
    assert 'outbox_dead_deliveries{subscriber="story"} 1.0' in text
    assert 'outbox_delivery_duration_seconds{quantile="0.5",subscriber="progress"} 0.04' in text
    assert 'outbox_relay_batch_size{quantile="0.5"} 1.0' in text
    assert "django_http_requests_total_by_method_total" in text


def test_metrics_are_not_public(client: Client, settings) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    outside = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert outside.status_code == 403 and "bearer token" in outside.json()["detail"]
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
    right = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert right.status_code == 200


def test_health_page_shows_counts_chart_and_dead_deliveries(client: Client) -> None:
    outbox_rows()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get("/admin/outbox/delivery/health/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<td id="pending-events">1</td>' in html
    assert '<svg id="throughput"' in html and "1 in all" in html
    assert "story: 1 dead" in html and "permanent error: no writer" in html


def test_health_page_retry_redispatches_a_subscribers_dead_deliveries(client: Client, monkeypatch) -> None:
    outbox_rows()
    published = []
    monkeypatch.setattr("outbox.dispatch.publish_deliveries", lambda pairs: published.extend(pairs))
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.post("/admin/outbox/delivery/health/", {"subscriber": "story"}, follow=True)
    assert "1 dead deliveries re-dispatched." in response.content.decode()
    assert [name for name, _ in published] == ["story"]
    assert Delivery.objects.get(subscriber="story").status == "dispatched"


def test_health_page_is_staff_only(client: Client) -> None:
    client.force_login(UserFactory())
    assert client.get("/admin/outbox/delivery/health/").status_code == 302


def test_delivery_logs_carry_event_delivery_and_subscriber(user, caplog) -> None:
    from pythonjsonlogger.json import JsonFormatter

    from tasks_app import services

    from .conftest import deliver

    task = TaskFactory(owner=user)
    services.complete_task(task, by=user)
    event = OutboxEvent.objects.get()
    with caplog.at_level(logging.INFO, logger="outbox.delivery"):
        deliver("progress", event)
    [record] = [r for r in caplog.records if r.name == "outbox.delivery"]
    delivery = Delivery.objects.get(event=event, subscriber="progress")
    line = json.loads(JsonFormatter().format(record))
    assert (line["event_id"], line["delivery_id"], line["subscriber"]) == (event.pk, delivery.pk, "progress")
