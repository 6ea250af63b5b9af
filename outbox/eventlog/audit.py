"""The event log's audit check: every outbox event has its log row, unless it was forgotten.

publish() writes the row in the event's own transaction, so a missing one is a broken promise,
with two exceptions that are not: the user deleted what the event was about (forget_aggregate
took its rows in the delete's transaction; the aggregate is then gone too), or the event's
month was archived (its rows are in the Parquet file, and the month is no longer attached).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db.models import Exists, Field, OuterRef

from ..models import OutboxEvent
from . import partitions
from .models import EventLog


def every_event_is_logged() -> Iterator[str]:
    missing = OutboxEvent.objects.filter(~Exists(EventLog.objects.filter(event_id=OuterRef("pk"))))
    for part in partitions.partitions():
        if not part.attached:  # detached for archiving: its rows left every query on purpose
            missing = missing.exclude(created_at__gte=part.start, created_at__lt=part.end)
    attached = [p for p in partitions.partitions() if p.attached]
    if attached:  # months before the oldest attached one were archived and dropped
        missing = missing.filter(created_at__gte=attached[0].start)
    rows = list(missing.order_by("id").values_list("id", "type", "aggregate_type", "aggregate_id"))
    for event_id, event_type, aggregate_type, aggregate_id in _not_forgotten(rows):
        yield f"event {event_id} ({event_type}) is not in the event log ({aggregate_type} {aggregate_id})"


def _valid_keys(field: Field, ids: set[str]) -> list[object]:
    keys = []
    for value in ids:
        try:
            keys.append(field.to_python(value))
        except ValidationError:  # no row can have it
            continue
    return keys


def _not_forgotten(rows: list[tuple[int, str, str, str]]) -> Iterator[tuple[int, str, str, str]]:
    """The rows whose aggregate still exists: only those should still be in the log."""
    ids_by_type: dict[str, set[str]] = defaultdict(set)
    for _, _, aggregate_type, aggregate_id in rows:
        ids_by_type[aggregate_type].add(aggregate_id)
    live: dict[str, set[str]] = {}
    for aggregate_type, ids in ids_by_type.items():
        try:
            model = apps.get_model(aggregate_type)
        except (LookupError, ValueError):  # a model that no longer exists: nothing of it is left
            live[aggregate_type] = set()
            continue
        pks = _valid_keys(model._meta.pk, ids)
        found = model._default_manager.filter(pk__in=pks).values_list("pk", flat=True)
        live[aggregate_type] = {str(pk) for pk in found}
    for row in rows:
        if row[3] in live[row[2]]:
            yield row
