"""Exports of the event log (Parquet and JSONL read back equal), archiving, and the completions
dataset (its columns, pseudonymized owners, and no free text unless asked for)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from outbox.eventlog import export, partitions
from outbox.eventlog.models import EventLog
from outbox.models import OutboxEvent
from tasks_app import services as task_services
from workers.models import Preferences, ProgressSnapshot

from .conftest import deliver
from .factories import EventLogFactory, MediaAttachmentFactory, ProjectFactory, TaskFactory

pytestmark = pytest.mark.django_db
KEY = "test-pseudonym-key"
T0 = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)  # near a month boundary: two partitions


def as_exported(row: EventLog) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "type": row.type,
        "version": row.version,
        "aggregate_type": row.aggregate_type,
        "aggregate_id": row.aggregate_id,
        "owner_id": row.owner_id,
        "committed_at": row.committed_at,
        "logged_at": row.logged_at,
        "payload": row.payload,
    }


@pytest.fixture
def log(user: Any, other_user: Any) -> list[EventLog]:
    partitions.ensure(ahead=1, today=T0.date())
    rows = [
        EventLogFactory(owner_id=user.pk, committed_at=T0 + timedelta(minutes=20 * i), type=kind)
        for i, kind in enumerate(["task.completed", "task.reopened", "task.completed", "task.deleted"])
    ]
    rows.append(EventLogFactory(owner_id=other_user.pk, committed_at=T0, payload={"nested": {"a": [1, "é"]}}))
    rows.append(EventLogFactory(owner_id=None, committed_at=T0 + timedelta(minutes=5)))
    EventLogFactory(owner_id=user.pk, committed_at=T0 + timedelta(days=5))  # outside the window
    return rows


def export_args(out: Path, fmt: str, *extra: str) -> list[str]:
    since, until = T0.isoformat(), (T0 + timedelta(days=1)).isoformat()
    return ["export", "--since", since, "--until", until, "--format", fmt, "--out", str(out), *extra]


def read(out: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "parquet":
        rows = pq.read_table(out).to_pylist()
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        for key in ("committed_at", "logged_at"):
            row[key] = datetime.fromisoformat(row[key])
    return rows


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_an_export_reads_back_equal_to_the_log(
    tmp_path: Path, log: list[EventLog], fmt: str, user: Any
) -> None:
    out = tmp_path / f"events.{fmt}"
    call_command("events", *export_args(out, fmt))
    expected = [as_exported(EventLog.objects.get(pk=r.event_id)) for r in log]
    assert sorted(read(out, fmt), key=lambda r: r["event_id"]) == sorted(
        expected, key=lambda r: r["event_id"]
    )
    assert not out.with_name(out.name + ".partial").exists()
    narrowed = tmp_path / f"mine.{fmt}"
    call_command("events", *export_args(narrowed, fmt, "--type", "task.completed", "--user", str(user.pk)))
    assert sorted(r["event_id"] for r in read(narrowed, fmt)) == [log[0].event_id, log[2].event_id]


def test_the_parquet_file_has_the_documented_schema(tmp_path: Path, log: list[EventLog]) -> None:
    out = tmp_path / "events.parquet"
    call_command("events", *export_args(out, "parquet"))
    assert pq.read_schema(out).remove_metadata() == export.SCHEMA


def test_small_chunks_stream_the_same_rows(tmp_path: Path, log: list[EventLog], settings: Any) -> None:
    settings.OUTBOX = {**settings.OUTBOX, "EVENTLOG_EXPORT_CHUNK": 2}
    selection = export.Selection(since=T0, until=T0 + timedelta(days=1))
    assert [len(c) for c in export.chunks(selection)] == [2, 2, 2]
    assert export.write_parquet(selection, tmp_path / "x.parquet") == len(log)


def test_a_bad_export_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError):
        call_command(
            "events", "export", "--since", "2026-02-01", "--until", "2026-01-01", "--out", str(tmp_path)
        )


def test_archive_detaches_exports_and_drops_old_months(tmp_path: Path, user: Any) -> None:
    partitions.ensure(ahead=1, today=date(2019, 12, 1))
    old = [EventLogFactory(owner_id=user.pk, committed_at=datetime(2019, 12, d, tzinfo=UTC)) for d in (1, 31)]
    january = EventLogFactory(owner_id=user.pk, committed_at=datetime(2020, 1, 2, tzinfo=UTC))
    kept = EventLogFactory(owner_id=user.pk)  # this month: never archived
    # January was detached by a run that failed before its export: this run finishes it.
    partitions.detach(next(p for p in partitions.partitions() if p.name.endswith("y2020m01")))
    call_command("events", "archive", "--before", "2020-02", "--out", str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["outbox_eventlog_y2019m12.parquet", "outbox_eventlog_y2020m01.parquet"]
    archived = pq.read_table(tmp_path / files[0]).column("event_id").to_pylist()
    assert sorted(archived) == sorted(r.event_id for r in old)
    assert pq.read_table(tmp_path / files[1]).column("event_id").to_pylist() == [january.event_id]
    assert not {"y2019m12", "y2020m01"} & {p.name[-8:] for p in partitions.partitions()}
    assert list(EventLog.objects.filter(owner_id=user.pk).values_list("event_id", flat=True)) == [
        kept.event_id
    ]
    with pytest.raises(CommandError):
        call_command("events", "archive", "--before", "2999-01", "--out", str(tmp_path))


# --- the completions dataset ------------------------------------------------------------------
def completions(tmp_path: Path, *flags: str) -> list[dict[str, Any]]:
    out = tmp_path / "completions.parquet"
    call_command("events", "dataset", "completions", "--out", str(out), *flags)
    return sorted(pq.read_table(out).to_pylist(), key=lambda r: r["completed_at"])


def test_the_completions_dataset_has_its_signals_and_pseudonymized_owners(
    tmp_path: Path, user: Any, settings: Any
) -> None:
    settings.OUTBOX = {**settings.OUTBOX, "EVENTLOG_PSEUDONYM_KEY": KEY}
    Preferences.objects.create(user=user, time_zone="Asia/Tokyo")
    project = ProjectFactory(owner=user)
    first = TaskFactory(
        owner=user, project=project, estimate=1, due_date=date(2100, 1, 1), title="Secret plan"
    )
    second = TaskFactory(owner=user, project=project, estimate=3, description="private notes")
    MediaAttachmentFactory(task=first, kind="image", caption="my face")
    MediaAttachmentFactory(task=first, kind="note", caption="")
    events, done_at = [], []
    for task in (first, second):
        task_services.complete_task(task, by=user)
        task.refresh_from_db()
        done_at.append(task.completed_at)  # before the reopen below clears it
        events.append(EventLog.objects.get(type="task.completed", aggregate_id=str(task.pk)))
        assert deliver("progress", OutboxEvent.objects.get(pk=events[-1].event_id)) == {"succeeded": 1}
    task_services.reopen_task(first)

    rows = completions(tmp_path)
    assert len(rows) == 2
    a, b = rows
    owner = hmac.new(KEY.encode(), f"user:{user.pk}".encode(), hashlib.sha256).hexdigest()[:32]
    assert a["owner"] == b["owner"] == owner and str(user.pk) not in {a["owner"], a["task"]}
    assert (a["completed_at"], b["completed_at"]) == tuple(done_at)
    tokyo = done_at[0] + timedelta(hours=9)
    assert (a["local_hour"], a["local_weekday"]) == (tokyo.hour, tokyo.weekday())
    assert a["seconds_to_complete"] == pytest.approx((done_at[0] - first.created_at).total_seconds())
    assert (a["estimate"], b["estimate"]) == (1, 3)
    assert a["days_early"] == (date(2100, 1, 1) - tokyo.date()).days and b["days_early"] is None
    snaps = {s.event_id: s for s in ProgressSnapshot.objects.filter(project=project)}
    after_a, after_b = (snaps[e.event_id] for e in events)
    assert (a["project_percent_before"], a["project_percent_after"]) == (0.0, float(after_a.percent))
    assert (b["project_percent_before"], b["project_percent_after"]) == (
        float(after_a.percent),
        float(after_b.percent),
    )
    assert (a["streak_days"], a["pace_per_week"]) == (after_a.streak_days, float(after_a.pace_per_week))
    assert (a["media_image"], a["media_note"], a["media_video"], b["media_image"]) == (1, 1, 0, 0)
    assert (a["reopened_later"], b["reopened_later"]) == (True, False)
    # No free text anywhere without --with-text.
    assert not {"title", "description", "captions"} & set(a)
    dumped = json.dumps(rows, default=str)
    assert "Secret plan" not in dumped and "private notes" not in dumped and "my face" not in dumped

    with_text = completions(tmp_path, "--with-text")
    assert with_text[0]["title"] == "Secret plan" and with_text[0]["captions"] == ["my face", ""]
    assert with_text[1]["description"] == "private notes"


def test_a_different_key_gives_different_pseudonyms_and_none_is_refused(
    tmp_path: Path, user: Any, settings: Any
) -> None:
    task_services.complete_task(TaskFactory(owner=user), by=user)
    settings.OUTBOX = {**settings.OUTBOX, "EVENTLOG_PSEUDONYM_KEY": KEY}
    first = completions(tmp_path)[0]["owner"]
    settings.OUTBOX = {**settings.OUTBOX, "EVENTLOG_PSEUDONYM_KEY": "another"}
    assert completions(tmp_path)[0]["owner"] != first
    settings.OUTBOX = {**settings.OUTBOX, "EVENTLOG_PSEUDONYM_KEY": ""}
    with pytest.raises(CommandError, match="OUTBOX_EVENTLOG_PSEUDONYM_KEY"):
        completions(tmp_path)
