"""The event log: exactly one row per committed event (relay crashes and replays included),
retention that never deletes an unlogged event, monthly partitions, pruning, forget, admin."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from outbox import relay, retention, services, sweeper
from outbox.eventlog import partitions, writer
from outbox.eventlog.models import EventLog
from outbox.models import Delivery, OutboxEvent
from outbox.publish import publish
from tasks_app import services as task_services

from . import subscribers as test_subscribers
from .conftest import settle
from .factories import EventLogFactory, GoalFactory, ProjectFactory, TaskFactory, UserFactory

PASSWORD = "correct horse battery staple"


def logged(event: OutboxEvent) -> int:
    return EventLog.objects.filter(event_id=event.pk).count()


def partition_of(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM outbox_eventlog WHERE event_id = %s", [event_id])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_publish_logs_the_event_with_its_owner_in_the_same_transaction(user: Any) -> None:
    task = TaskFactory(owner=user)
    task_services.complete_task(task, by=user)
    event = OutboxEvent.objects.get(type="task.completed", aggregate_id=str(task.pk))
    row = EventLog.objects.get(event_id=event.pk)
    assert (row.type, row.version, row.aggregate_type, row.aggregate_id) == (
        "task.completed",
        1,
        "tasks_app.task",
        str(task.pk),
    )
    assert row.owner_id == user.pk and row.payload == event.payload
    assert row.committed_at == event.created_at and row.logged_at >= row.committed_at - timedelta(seconds=1)
    # Rolled back with its transaction: no event, no log row.
    with pytest.raises(RuntimeError), transaction.atomic():
        gone = publish("task.completed", task, {"user_id": user.pk})
        raise RuntimeError("the request failed after publishing")
    assert not OutboxEvent.objects.filter(pk=gone.pk).exists() and logged(gone) == 0


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_crashing_relay_and_replays_log_each_event_exactly_once(
    celery_worker, use_subscribers, monkeypatch, settings
) -> None:
    use_subscribers("recorder")
    settings.OUTBOX = {**settings.OUTBOX, "KICK": False}  # this test runs the relay itself
    owner = UserFactory()
    task_services.complete_task(TaskFactory(owner=owner), by=owner)
    event = OutboxEvent.objects.get(type="task.completed")

    # 1. The relay dies before its commit (after claiming and making deliveries): all rolled back.
    def die_in_transaction(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("relay killed before commit")

    with monkeypatch.context() as m:
        m.setattr("django.db.models.query.QuerySet.update", die_in_transaction)
        with pytest.raises(SystemExit):
            relay.relay_once()
    assert not Delivery.objects.exists() and OutboxEvent.objects.get(pk=event.pk).status == "pending"

    # 2. It dies again, after its commit and before publishing: the sweeper re-publishes.
    def die(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("relay killed after commit")

    with monkeypatch.context() as m:
        m.setattr(relay, "publish_deliveries", die)
        with pytest.raises(SystemExit):
            relay.relay_once()
    assert sweeper.sweep(lease_seconds=0)["expired"] == 1
    settle(lambda: Delivery.objects.filter(status="succeeded").count() == 1, sweep=False)

    # 3. An operator replays the subscriber, and a backfill runs over every event.
    assert services.replay("recorder") == 1
    settle(lambda: test_subscribers.calls[("recorder", event.pk)] == 2, sweep=False)
    assert writer.backfill() == 0
    assert logged(event) == 1 and EventLog.objects.count() == OutboxEvent.objects.count() == 1


@pytest.mark.django_db
def test_backfill_logs_events_written_without_publish_once() -> None:
    task = TaskFactory()
    event = OutboxEvent.objects.create(
        type="task.completed",
        aggregate_type="tasks_app.task",
        aggregate_id=str(task.pk),
        payload={"user_id": task.owner_id, "task_id": str(task.pk)},
    )
    assert logged(event) == 0
    assert writer.backfill([event.pk]) == 1 and writer.backfill() == 0
    assert EventLog.objects.get(event_id=event.pk).owner_id == task.owner_id


@pytest.mark.django_db
def test_retention_never_deletes_an_event_missing_from_the_log() -> None:
    old = timezone.now() - timedelta(days=30)

    def finished(logged_too: bool) -> OutboxEvent:
        task = TaskFactory()
        with transaction.atomic():
            event = publish("task.completed", task, {"user_id": task.owner_id})
        if not logged_too:
            EventLog.objects.filter(event_id=event.pk).delete()  # as if written before the log
        OutboxEvent.objects.filter(pk=event.pk).update(status="dispatched", dispatched_at=old)
        Delivery.objects.create(event=event, subscriber="story", status="succeeded", completed_at=old)
        return event

    kept_history, unlogged = finished(True), finished(False)
    assert retention.purge(older_than_days=7) == 1
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {unlogged.pk}
    assert logged(kept_history) == 1  # the outbox forgot it; the log did not
    writer.backfill()
    assert retention.purge(older_than_days=7) == 1 and not OutboxEvent.objects.exists()
    assert EventLog.objects.count() == 2


@pytest.mark.django_db
def test_deleting_the_account_deletes_its_log_rows_and_no_one_elses(
    api: Any, user: Any, other_user: Any
) -> None:
    for owner in (user, other_user):
        task_services.complete_task(TaskFactory(owner=owner), by=owner)
    assert EventLog.objects.filter(owner_id=user.pk).count() == 1
    response = api.delete("/api/me/", {"password": PASSWORD}, format="json")
    assert response.status_code == 204, response.content
    assert not EventLog.objects.filter(owner_id=user.pk).exists()
    assert EventLog.objects.filter(owner_id=other_user.pk).count() == 1


@pytest.mark.django_db
def test_deleting_a_task_project_or_goal_takes_its_history_and_keeps_the_deletion(
    api: Any, user: Any
) -> None:
    goal = GoalFactory(owner=user)
    project = ProjectFactory(owner=user, goal=goal)
    task, kept = TaskFactory(owner=user, project=project), TaskFactory(owner=user, project=project)
    for t in (task, kept):
        task_services.complete_task(t, by=user)
    task_services.reopen_task(task)

    def history(obj: Any) -> list[str]:
        rows = EventLog.objects.filter(aggregate_type=obj._meta.label_lower, aggregate_id=str(obj.pk))
        return sorted(rows.values_list("type", flat=True))

    assert history(task) == ["task.completed", "task.reopened"]
    assert api.delete(f"/api/tasks/{task.pk}/").status_code == 204
    assert history(task) == ["task.deleted"]  # ids only: the record that a task was deleted
    assert history(kept) == ["task.completed"]
    with transaction.atomic():  # a project milestone in its history, as progress would publish it
        publish("project.completed", project, {"project_id": str(project.pk), "user_id": user.pk})
    assert api.delete(f"/api/projects/{project.pk}/").status_code == 204
    assert history(project) == ["project.deleted"]
    assert api.delete(f"/api/goals/{goal.pk}/").status_code == 204
    assert history(goal) == ["goal.deleted"]
    assert history(kept) == ["task.completed"]


@pytest.mark.django_db
def test_partitions_are_made_ahead_and_the_task_is_scheduled() -> None:
    from selfos.celery import app

    made = partitions.ensure(ahead=2, today=date(2091, 11, 20))
    assert made == ["outbox_eventlog_y2091m11", "outbox_eventlog_y2091m12", "outbox_eventlog_y2092m01"]
    assert partitions.ensure(ahead=2, today=date(2091, 11, 20)) == []  # idempotent
    names = {p.name for p in partitions.partitions() if p.attached}
    assert set(made) <= names
    beat = app.conf.beat_schedule["outbox-eventlog-partitions"]
    assert beat["task"] == "outbox.eventlog_partitions" and beat["options"]["queue"] == "outbox"
    # The migration made this month's partition and the next ones.
    assert partitions.name_for(partitions.month_of(timezone.now())) in names


@pytest.mark.django_db
def test_an_event_of_a_month_without_a_partition_is_kept_and_moves_to_its_partition() -> None:
    when = datetime(2093, 3, 14, 15, 9, tzinfo=UTC)
    task = TaskFactory()
    event = OutboxEvent.objects.create(
        type="task.completed",
        aggregate_type="tasks_app.task",
        aggregate_id=str(task.pk),
        payload={"user_id": task.owner_id},
        created_at=when,
    )
    writer.log_event(event, f'{{"user_id": {task.owner_id}}}')
    assert partition_of(event.pk) == partitions.DEFAULT  # no month partition: the default took it
    assert "outbox_eventlog_y2093m03" in partitions.ensure(ahead=0, today=date(2093, 3, 1))
    assert partition_of(event.pk) == "outbox_eventlog_y2093m03"
    assert EventLog.objects.filter(event_id=event.pk).count() == 1
    assert partitions.months_in_default() == []


@pytest.mark.django_db
def test_owner_and_time_queries_scan_only_the_months_they_name(user: Any) -> None:
    partitions.ensure(ahead=0, today=date(2094, 5, 1))
    partitions.ensure(ahead=0, today=date(2094, 6, 1))
    EventLogFactory(owner_id=user.pk, committed_at=datetime(2094, 5, 3, tzinfo=UTC))
    plan = EventLog.objects.filter(
        owner_id=user.pk,
        committed_at__gte=datetime(2094, 5, 1, tzinfo=UTC),
        committed_at__lt=datetime(2094, 6, 1, tzinfo=UTC),
    ).explain()
    assert "outbox_eventlog_y2094m05" in plan
    assert "outbox_eventlog_y2094m06" not in plan and partitions.DEFAULT not in plan
    current = partitions.name_for(partitions.month_of(timezone.now()))
    assert current not in plan


@pytest.mark.django_db
def test_the_admin_browses_the_log_and_changes_nothing(client: Client, user: Any) -> None:
    task_services.complete_task(TaskFactory(owner=user), by=user)
    row = EventLog.objects.get(owner_id=user.pk)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    listing = client.get("/admin/outbox/eventlog/", {"type": "task.completed", "owner": str(user.pk)})
    assert listing.status_code == 200 and f">{row.event_id}<" in listing.content.decode()
    other = client.get("/admin/outbox/eventlog/", {"owner": str(user.pk + 1000)})
    assert f">{row.event_id}<" not in other.content.decode()
    day = row.committed_at.replace(hour=0, minute=0, second=0, microsecond=0)
    dated = client.get(
        "/admin/outbox/eventlog/",
        {"committed_at__gte": day.isoformat(), "committed_at__lt": (day + timedelta(days=1)).isoformat()},
    )
    assert dated.status_code == 200 and f">{row.event_id}<" in dated.content.decode()
    before = client.get(
        "/admin/outbox/eventlog/", {"committed_at__lt": (day - timedelta(days=1)).isoformat()}
    )
    assert f">{row.event_id}<" not in before.content.decode()
    assert client.get("/admin/outbox/eventlog/add/").status_code == 403
    detail = client.get(f"/admin/outbox/eventlog/{row.event_id}/change/")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert client.post(f"/admin/outbox/eventlog/{row.event_id}/delete/").status_code == 403
    changed = client.post(f"/admin/outbox/eventlog/{row.event_id}/change/", {"type": "forged"})
    assert changed.status_code == 403
    assert EventLog.objects.get(event_id=row.event_id).type == "task.completed"
