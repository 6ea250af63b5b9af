"""An account with something of everything, made by the real code, and ways to look for what is left of it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from axes.models import AccessAttempt, AccessLog
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Model
from django.utils import timezone

from outbox.eventlog.models import EventLog
from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Goal, MediaAttachment, Project, Task
from workers.models import (
    Device,
    MemoryEntry,
    Notification,
    Preferences,
    ProgressSnapshot,
    PushReceipt,
    StorySegment,
)

from .conftest import deliver
from .factories import GoalFactory, MediaAttachmentFactory, ProjectFactory, TaskFactory

PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's
SUBSCRIBERS = ("memory", "progress", "story", "notifications")
User = get_user_model()


# --- what a user has --------------------------------------------------------------------------
@dataclass
class Made:
    """One user's data, made by the real code: the ids to look for afterwards."""

    user: Any
    device_token: str
    pending_delivery: int
    ids: dict[str, set[str]] = field(default_factory=dict)


def make_everything(user: Any) -> Made:
    """A goal, a project with two tasks and media, a completed task the four subscribers handled
    (snapshot, segment, notification and its push, memory row), the milestones that followed,
    a device, preferences, a login record, and a completion nobody has delivered yet."""
    Preferences.objects.create(user=user, time_zone="Europe/Paris")
    token = f"fcm-token-of-{user.username}-0123456789abcdef"
    Device.objects.create(owner=user, token=token, platform="android")
    goal = GoalFactory(owner=user)
    project = ProjectFactory(owner=user, goal=goal)
    done = TaskFactory(owner=user, project=project, title=f"Bake bread ({user.username})")
    MediaAttachmentFactory(task=done, caption="the loaf")
    later = TaskFactory(owner=user, project=project)
    MediaAttachmentFactory(task=later)
    TaskFactory(owner=user, project=None, title="A loose task")
    services.complete_task(done, by=user)
    event = OutboxEvent.objects.get(type="task.completed", aggregate_id=str(done.pk))
    for subscriber in SUBSCRIBERS:
        assert deliver(subscriber, event) == {"succeeded": 1}, subscriber
    # As the relay leaves it once it has fanned it out (deliver() skips the relay).
    OutboxEvent.objects.filter(pk=event.pk).update(
        status=OutboxEvent.Status.DISPATCHED, dispatched_at=timezone.now()
    )
    # A completion whose other deliveries are still to come: one waiting for its retry, the
    # rest not even made. Its progress delivery completes the project: a milestone event.
    services.complete_task(later, by=user)
    pending = OutboxEvent.objects.get(type="task.completed", aggregate_id=str(later.pk))
    assert deliver("progress", pending) == {"succeeded": 1}
    waiting = Delivery.objects.create(
        event=pending,
        subscriber="story",
        status=Delivery.Status.PENDING,
        attempts=1,
        next_attempt_at=timezone.now() + timedelta(minutes=5),
    )
    AccessAttempt.objects.create(
        username=user.username,
        ip_address="192.0.2.1",
        user_agent="test",
        http_accept="*/*",
        path_info="/api/auth/token/",
        get_data="",
        post_data="",
        failures_since_start=1,
    )
    AccessLog.objects.create(
        username=user.username, ip_address="192.0.2.1", user_agent="test", http_accept="*/*", path_info="/"
    )
    made = Made(user=user, device_token=token, pending_delivery=waiting.pk)
    made.ids = {
        kind: {str(pk) for pk in queryset.values_list("pk", flat=True)}
        for kind, queryset in {
            "goals": Goal.objects.filter(owner=user),
            "projects": Project.objects.filter(owner=user),
            "tasks": Task.objects.filter(owner=user),
            "media": MediaAttachment.objects.filter(task__owner=user),
            "progress_snapshots": ProgressSnapshot.objects.filter(project__owner=user),
            "story_segments": StorySegment.objects.filter(owner=user),
            "notifications": Notification.objects.filter(owner=user),
            "devices": Device.objects.filter(owner=user),
            "memory_entries": MemoryEntry.objects.filter(owner=user),
            "events": EventLog.objects.filter(owner_id=user.pk),
        }.items()
    }
    # The real code made every kind: an empty one would make the checks below vacuous.
    assert all(made.ids.values()), {kind: len(ids) for kind, ids in made.ids.items()}
    assert PushReceipt.objects.filter(notification__owner=user).exists()
    assert OutboxEvent.objects.filter(type="project.completed", payload__user_id=user.pk).exists()
    return made


def references_to_user(user_id: int) -> dict[str, int]:
    """Every row of every installed model whose foreign key (or one-to-one) names the user."""
    found = {}
    for model in apps.get_models(include_auto_created=True):
        for f in model._meta.concrete_fields:
            if f.is_relation and f.related_model is not None and issubclass(f.related_model, User):
                n = model._default_manager.filter(**{f.attname: user_id}).count()
                if n:
                    found[f"{model._meta.label}.{f.name}"] = n
    return found


def derived_rows(user_id: int) -> dict[type[Model], set[Any]]:
    """The user's row and, transitively, every row that references one of them by foreign key."""
    found: dict[type[Model], set[Any]] = {User: {user_id}}
    frontier = dict(found)
    models = apps.get_models(include_auto_created=True)
    while frontier:
        new: dict[type[Model], set[Any]] = {}
        for model in models:
            for f in model._meta.concrete_fields:
                target = f.related_model if f.is_relation else None
                if target is None or target._meta.concrete_model not in frontier:
                    continue
                pks = set(
                    model._default_manager.filter(
                        **{f"{f.attname}__in": frontier[target._meta.concrete_model]}
                    ).values_list("pk", flat=True)
                )
                pks -= found.get(model, set())
                if pks:
                    new.setdefault(model, set()).update(pks)
        for model, pks in new.items():
            found.setdefault(model, set()).update(pks)
        frontier = new
    return found


def events_mentioning(user_id: int, ids: set[str]) -> list[int]:
    """Outbox events whose payload names the user, or whose aggregate or payload names their rows."""
    hits = []
    for event in OutboxEvent.objects.all():
        text = json.dumps(event.payload)
        if (
            event.payload.get("user_id") == user_id
            or event.aggregate_id in ids
            or any(i in text for i in ids)
        ):
            hits.append(event.pk)
    return hits


def all_ids(made: Made) -> set[str]:
    """The user's rows' UUIDs (snapshot and event ids are small integers: no use searching text for them)."""
    return set().union(
        *(ids for kind, ids in made.ids.items() if kind not in ("progress_snapshots", "events"))
    )
