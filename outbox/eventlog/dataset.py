"""`events dataset completions`: one row per task completion in the log, with the signals a
personalization model learns from, owners pseudonymized, free text only when asked for.

The one part of the outbox that reads the domain's tables (tasks, media, progress snapshots,
preferences). It looks them up by app label at run time, not by import, so the outbox still
imports nothing of ours and works (minus this command) in a project without them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.parquet as pq
from django.apps import apps
from django.conf import settings
from django.db.models import Max, OuterRef, Subquery
from django.utils.dateparse import parse_datetime

from .. import conf
from . import export
from .models import EventLog

logger = logging.getLogger(__name__)

COMPLETED, REOPENED = "task.completed", "task.reopened"
MEDIA_KINDS = ("image", "audio", "video", "link", "note")
# Only for DEBUG runs without a key: pseudonyms made with it are not secret.
DEVELOPMENT_KEY = "selfos-development-pseudonym-key"

SCHEMA = pa.schema(
    [
        pa.field("owner", pa.string(), nullable=False),  # keyed hash of the user id
        pa.field("task", pa.string(), nullable=False),  # keyed hash of the task id
        pa.field("completed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("local_hour", pa.int8(), nullable=False),  # 0-23 in the user's time zone
        pa.field("local_weekday", pa.int8(), nullable=False),  # 0 = Monday
        pa.field("seconds_to_complete", pa.float64(), nullable=False),  # from the task's creation
        pa.field("estimate", pa.int32()),
        pa.field("days_early", pa.int32()),  # due date - local completion date; < 0: late
        pa.field("project_percent_before", pa.float64()),
        pa.field("project_percent_after", pa.float64()),
        pa.field("streak_days", pa.int32()),
        pa.field("pace_per_week", pa.float64()),
        *(pa.field(f"media_{kind}", pa.int32(), nullable=False) for kind in MEDIA_KINDS),
        pa.field("reopened_later", pa.bool_(), nullable=False),
    ]
)
TEXT_FIELDS = [
    pa.field("title", pa.string()),
    pa.field("description", pa.string()),
    pa.field("captions", pa.list_(pa.string())),
]


class NoKey(RuntimeError):
    """No pseudonymization key is configured, and this is not a development run."""


def pseudonym_key() -> bytes:
    key = conf.get("EVENTLOG_PSEUDONYM_KEY")
    if key:
        return str(key).encode()
    if settings.DEBUG:
        logger.warning("event log dataset: no OUTBOX_EVENTLOG_PSEUDONYM_KEY; using the development key")
        return DEVELOPMENT_KEY.encode()
    raise NoKey("set OUTBOX_EVENTLOG_PSEUDONYM_KEY: owners are pseudonymized with it (HMAC-SHA256)")


def pseudonym(key: bytes, kind: str, value: object) -> str:
    """HMAC-SHA256 of `kind:value` under the key, 128 bits in hex: stable for one key, and not
    reversible or linkable to the id without it (a plain hash of a small integer would be)."""
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def write_completions(
    events: export.Selection,
    out: Path,
    key: bytes,
    *,
    with_text: bool = False,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Write one row per completion event of `events`; returns the rows written. Completions of
    tasks deleted since are left out: deleting a task is asking for it to be forgotten."""
    schema = pa.schema([*SCHEMA, *TEXT_FIELDS]) if with_text else SCHEMA
    written = 0
    with export.replacing(out) as partial, pq.ParquetWriter(partial, schema, compression="zstd") as file:
        for rows in export.chunks(events):
            records = _records(rows, key, with_text)
            if records:
                file.write_batch(pa.RecordBatch.from_pylist(records, schema=schema))
            written += len(records)
            if progress:
                progress(len(rows))
    return written


def _records(rows: list[tuple[Any, ...]], key: bytes, with_text: bool) -> list[dict[str, Any]]:
    Task = apps.get_model("tasks_app", "Task")
    Media = apps.get_model("tasks_app", "MediaAttachment")
    Snapshot = apps.get_model("workers", "ProgressSnapshot")
    Preferences = apps.get_model("workers", "Preferences")

    task_ids = {row[4] for row in rows}
    event_ids = [row[0] for row in rows]
    owners = {row[5] for row in rows if row[5] is not None}
    tasks = {str(t["id"]): t for t in Task.objects.filter(pk__in=task_ids).values()}
    media: dict[str, list[tuple[str, datetime, str]]] = defaultdict(list)
    for task_id, kind, created, caption in Media.objects.filter(task_id__in=tasks).values_list(
        "task_id", "kind", "created_at", "caption"
    ):
        media[str(task_id)].append((kind, created, caption))
    earlier = Snapshot.objects.filter(project_id=OuterRef("project_id"), id__lt=OuterRef("id")).order_by(
        "-id"
    )
    snapshots = {
        s["event_id"]: s
        for s in Snapshot.objects.filter(event_id__in=event_ids)
        .annotate(before=Subquery(earlier.values("percent")[:1]))
        .values("event_id", "percent", "before", "streak_days", "pace_per_week")
    }
    zones = dict(Preferences.objects.filter(user_id__in=owners).values_list("user_id", "time_zone"))
    last_reopen = dict(
        # By owner too: the owner index finds these rows (nothing indexes aggregate ids alone).
        EventLog.objects.filter(type=REOPENED, owner_id__in=owners, aggregate_id__in=tasks)
        .values("aggregate_id")
        .annotate(last=Max("committed_at"))
        .values_list("aggregate_id", "last")
    )
    records = []
    for event_id, _, _, _, task_id, owner_id, committed_us, _, payload_text in rows:
        task = tasks.get(task_id)
        if task is None or owner_id is None:
            continue
        committed = export.EPOCH + timedelta(microseconds=committed_us)
        done = parse_datetime(json.loads(payload_text).get("completed_at") or "") or committed
        local = done.astimezone(_zone(zones.get(owner_id)))
        snap = snapshots.get(event_id, {})
        after = snap.get("percent")
        before = snap.get("before")
        if after is not None and before is None:
            before = 0  # the project's first snapshot: nothing was done before it
        counts = dict.fromkeys(MEDIA_KINDS, 0)
        for kind, created, _ in media[task_id]:
            if created <= done and kind in counts:
                counts[kind] += 1
        reopened = last_reopen.get(task_id)
        record = {
            "owner": pseudonym(key, "user", owner_id),
            "task": pseudonym(key, "task", task_id),
            "completed_at": done.astimezone(UTC),
            "local_hour": local.hour,
            "local_weekday": local.weekday(),
            "seconds_to_complete": (done - task["created_at"]).total_seconds(),
            "estimate": task["estimate"],
            "days_early": (task["due_date"] - local.date()).days if task["due_date"] else None,
            "project_percent_before": float(before) if before is not None else None,
            "project_percent_after": float(after) if after is not None else None,
            "streak_days": snap.get("streak_days"),
            "pace_per_week": float(snap["pace_per_week"]) if snap else None,
            **{f"media_{kind}": n for kind, n in counts.items()},
            "reopened_later": reopened is not None and reopened > committed,
        }
        if with_text:
            record |= {
                "title": task["title"],
                "description": task["description"],
                "captions": [caption for _, created, caption in media[task_id] if created <= done],
            }
        records.append(record)
    return records


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
