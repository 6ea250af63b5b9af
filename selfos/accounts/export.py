"""The account export (GDPR Art. 20): all of a user's data as one JSON document, written as a
stream, model by model, row by row, so a large account never sits in memory at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from outbox.eventlog.models import EventLog
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

FORMAT = "selfos-export"
VERSION = 1
CHUNK = 500  # rows fetched per round trip, and the unit children (media, pushes) are fetched by
FLUSH_BYTES = 64 * 1024
REDACT_KEEP = 6  # a device token's last characters shown: enough to recognise it, useless to push

# The sections in document order, after "profile" and "preferences".
Row = dict[str, Any]


def _dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


def _rows(queryset: QuerySet[Any], *fields: str) -> Iterator[Row]:
    return queryset.order_by("created_at", "pk").values(*fields).iterator(chunk_size=CHUNK)


def _with_children(
    parents: Iterator[Row], attach: Callable[[list[Any]], dict[Any, list[Row]]], key: str
) -> Iterator[Row]:
    """Each parent with its children under `key`, fetched one query per chunk of parents."""
    while chunk := list(islice(parents, CHUNK)):
        children = attach([row["id"] for row in chunk])
        for row in chunk:
            row[key] = children.get(row["id"], [])
            yield row


def _media_of(task_ids: list[Any]) -> dict[Any, list[Row]]:
    found: dict[Any, list[Row]] = {}
    for media in (
        MediaAttachment.objects.filter(task_id__in=task_ids)
        .order_by("created_at", "id")
        .values("id", "task_id", "kind", "url", "caption", "created_at")
    ):
        found.setdefault(media.pop("task_id"), []).append(media)
    return found


def _pushes_of(notification_ids: list[Any]) -> dict[Any, list[Row]]:
    found: dict[Any, list[Row]] = {}
    for push in (
        PushReceipt.objects.filter(notification_id__in=notification_ids)
        .order_by("created_at", "id")
        .values("notification_id", "device_id", "status", "created_at")
    ):
        found.setdefault(push.pop("notification_id"), []).append(push)
    return found


def redact(token: str) -> str:
    return "…" + token[-REDACT_KEEP:] if len(token) > 2 * REDACT_KEEP else "…"


def _devices(owner_id: int) -> Iterator[Row]:
    for row in _rows(
        Device.objects.filter(owner_id=owner_id),
        "id",
        "platform",
        "token",
        "active",
        "deactivated_reason",
        "created_at",
    ):
        row["token"] = redact(row["token"])
        yield row


def sections(owner_id: int) -> dict[str, Callable[[], Iterable[Row]]]:
    """Each section's rows, made lazily: a section's queries run only when it is written."""
    owned = {"owner_id": owner_id}
    return {
        "goals": lambda: _rows(
            Goal.objects.filter(**owned),
            *("id", "title", "description", "target_date", "status", "progress_percent"),
            *("created_at", "updated_at"),
        ),
        "projects": lambda: _rows(
            Project.objects.filter(**owned),
            *("id", "goal_id", "title", "description", "status", "progress_percent"),
            *("created_at", "updated_at"),
        ),
        "tasks": lambda: _with_children(
            _rows(
                Task.objects.filter(**owned),
                *("id", "project_id", "title", "description", "status", "completed_at", "due_date"),
                *("estimate", "created_at", "updated_at"),
            ),
            _media_of,
            "media",
        ),
        "progress_snapshots": lambda: _rows(
            ProgressSnapshot.objects.filter(project__owner_id=owner_id),
            *("id", "project_id", "event_id", "percent", "tasks_done", "tasks_total", "goal_percent"),
            *("streak_days", "pace_per_week", "estimated_finish", "created_at"),
        ),
        "story_segments": lambda: _rows(
            StorySegment.objects.filter(**owned),
            *("id", "kind", "subject_id", "title", "text", "media", "recalled", "writer", "metadata"),
            "created_at",
        ),
        "notifications": lambda: _with_children(
            _rows(
                Notification.objects.filter(**owned),
                *("id", "kind", "title", "body", "data", "read_at", "created_at"),
            ),
            _pushes_of,
            "pushes",
        ),
        "devices": lambda: _devices(owner_id),
        # Text and title, not vectors: the vectors are the model's, recomputed from the text.
        "memory_entries": lambda: (
            MemoryEntry.objects.filter(**owned)
            .order_by("completed_at", "task_id")
            .values("task_id", "title", "text", "completed_at", "updated_at")
            .iterator(chunk_size=CHUNK)
        ),
        # The activity history (the event log), oldest first, as GET /api/events/ shows it.
        "events": lambda: (
            EventLog.objects.filter(**owned)
            .order_by("committed_at", "event_id")
            .values(
                "event_id", "type", "version", "aggregate_type", "aggregate_id", "payload", "committed_at"
            )
            .iterator(chunk_size=CHUNK)
        ),
    }


def _header(user: AbstractBaseUser) -> str:
    profile = {
        "id": user.pk,
        "username": user.get_username(),
        "email": getattr(user, "email", ""),
        "date_joined": getattr(user, "date_joined", None),
    }
    preferences = (
        Preferences.objects.filter(user_id=user.pk)
        .values("time_zone", "push_enabled", "quiet_hours_start", "quiet_hours_end")
        .first()
    )
    head = {"format": FORMAT, "version": VERSION, "exported_at": timezone.now()}
    return _dumps(head)[:-1] + f', "profile": {_dumps(profile)}, "preferences": {_dumps(preferences)}'


def _document(user: AbstractBaseUser) -> Iterator[str]:
    yield _header(user)
    for name, rows in sections(user.pk).items():
        yield f', "{name}": ['
        for i, row in enumerate(rows()):
            yield ("," if i else "") + _dumps(row)
        yield "]"
    yield "}\n"


def stream(user: AbstractBaseUser) -> Iterator[bytes]:
    """The document in pieces of about FLUSH_BYTES, read in one snapshot of the database.

    The generator runs after the view has returned, while the response is sent: it opens its own
    transaction (repeatable read, read only) so the sections agree with each other even if the
    user changes something during the download.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            # Only a transaction's first statement can choose its snapshot (a test's wrapping
            # transaction has already run queries, so it keeps its own).
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        buffer: list[str] = []
        size = 0
        for piece in _document(user):
            buffer.append(piece)
            size += len(piece)
            if size >= FLUSH_BYTES:
                yield "".join(buffer).encode()
                buffer, size = [], 0
        yield "".join(buffer).encode()
