"""Writing to the event log: the copy publish() makes, the backfill, and the forgets.

The application never updates log rows, and deletes them only to forget what a user deleted
(their account, or one task, project or goal) and by archiving whole partitions; everything
that writes or removes rows is in this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Model

from .models import EventLog

if TYPE_CHECKING:
    from ..models import OutboxEvent

TABLE = EventLog._meta.db_table
COLUMNS = "event_id, committed_at, type, version, aggregate_type, aggregate_id, owner_id, payload"


def owner_of(payload: dict[str, Any]) -> int | None:
    """The user an event is about: every domain payload carries `user_id` (tasks_app/events.py)."""
    value = payload.get("user_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def log_event(event: OutboxEvent, payload_json: str) -> None:
    """Copy one event into the log, in the caller's transaction (publish()'s).

    Same transaction, so the row exists if and only if the event does: a relay crash or a
    replay cannot add or lose one. `payload_json` is the text publish() already made.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",  # noqa: S608
            [
                event.pk,
                event.created_at,
                event.type,
                event.version,
                event.aggregate_type,
                event.aggregate_id,
                owner_of(event.payload),
                payload_json,
            ],
        )


def backfill(ids: list[int] | None = None) -> int:
    """Log outbox events that are not in the log yet (all of them, or these ids); returns how many.

    For events written before the log existed, or by code that inserted events without
    publish(). ON CONFLICT DO NOTHING on the log's key makes it safe to run any number of times.
    """
    from ..models import OutboxEvent

    events = OutboxEvent._meta.db_table
    where = "WHERE e.id = ANY(%s)" if ids is not None else ""
    owner = (
        "CASE WHEN jsonb_typeof(e.payload->'user_id') = 'number' THEN (e.payload->>'user_id')::bigint "
        "WHEN e.payload->>'user_id' ~ '^[0-9]{1,18}$' THEN (e.payload->>'user_id')::bigint END"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} ({COLUMNS}) "  # noqa: S608 - our own table names
            f"SELECT e.id, e.created_at, e.type, e.version, e.aggregate_type, e.aggregate_id, {owner}, "
            f"e.payload FROM {events} e {where} ON CONFLICT DO NOTHING",
            [ids] if ids is not None else [],
        )
        return cursor.rowcount


def forget_owner(user_id: int) -> int:
    """Delete every log row about this user (the account delete); returns how many.

    One DELETE: the owner index of each partition finds the rows.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE owner_id = %s", [user_id])  # noqa: S608
        return cursor.rowcount


def forget_aggregate(aggregate: Model, owner_id: int) -> int:
    """Delete the log rows about this task, project or goal (a user deleted it); returns how many.

    Called in the delete's own transaction, before its `*.deleted` event is published: that
    event stays, ids only, as the record that something was deleted. Scoped by owner, so the
    owner index of each partition finds the rows without reading anyone else's history.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {TABLE} WHERE owner_id = %s AND aggregate_type = %s AND aggregate_id = %s",  # noqa: S608
            [owner_id, aggregate._meta.label_lower, str(aggregate.pk)],
        )
        return cursor.rowcount
