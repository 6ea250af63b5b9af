"""The admin's bulk actions need the change permission: view-only staff can look, not re-run."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from outbox.models import Delivery, OutboxEvent

from .factories import TaskFactory, UserFactory


def dead_delivery() -> Delivery:
    task = TaskFactory()
    event = OutboxEvent.objects.create(
        type="task.completed",
        aggregate_type="tasks_app.task",
        aggregate_id=str(task.pk),
        payload={},
        status="dispatched",
        dispatched_at=timezone.now(),
    )
    return Delivery.objects.create(event=event, subscriber="story", status="dead", last_error="no writer")


def staff_with(*codenames: str) -> Any:
    user = UserFactory(is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="outbox", codename__in=codenames)
    )
    return user


def retry(client: Client, delivery: Delivery) -> Any:
    return client.post(
        "/admin/outbox/delivery/",
        {"action": "retry_selected", "_selected_action": [delivery.pk], "index": "0"},
    )


@pytest.fixture
def retried(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids the admin asked the outbox's retry service to re-dispatch (nothing is sent)."""
    calls: list[int] = []

    def retry_deliveries(queryset: Any) -> int:
        calls.extend(queryset.values_list("pk", flat=True))
        return queryset.count()

    monkeypatch.setattr("outbox.services.retry_deliveries", retry_deliveries)
    return calls


@pytest.mark.django_db
def test_a_staff_user_who_may_only_view_deliveries_cannot_retry_them(
    client: Client, retried: list[int]
) -> None:
    delivery = dead_delivery()
    client.force_login(staff_with("view_delivery"))
    page = client.get("/admin/outbox/delivery/")
    assert page.status_code == 200 and f"#{delivery.event_id}" in page.content.decode()
    assert "retry_selected" not in page.content.decode()  # not offered
    retry(client, delivery)  # and not run when posted anyway
    assert retried == []
    delivery.refresh_from_db()
    assert delivery.status == "dead"


@pytest.mark.django_db
def test_a_staff_user_who_may_change_deliveries_retries_them(client: Client, retried: list[int]) -> None:
    delivery = dead_delivery()
    client.force_login(staff_with("view_delivery", "change_delivery"))
    assert "retry_selected" in client.get("/admin/outbox/delivery/").content.decode()
    assert retry(client, delivery).status_code == 302
    assert retried == [delivery.pk]


OUR_APPS = {"outbox", "tasks_app", "workers"}  # django-axes' own admin is its authors' to keep


def test_every_admin_action_declares_a_permission_stronger_than_view() -> None:
    ours = {m: a for m, a in admin.site._registry.items() if m._meta.app_label in OUR_APPS}
    assert len(ours) >= 5
    for model, model_admin in ours.items():
        for func, name, _ in model_admin._get_base_actions():
            required = set(getattr(func, "allowed_permissions", ()))
            assert required - {"view"}, f"{model.__name__} admin action {name!r} needs no permission"
