"""Streaming the event log out: Parquet (pyarrow) or JSON Lines, chunk by chunk from a
server-side cursor, so memory stays flat however many rows go out.

The Parquet schema (documented in the README) is `SCHEMA` below; the JSONL lines carry the
same fields, timestamps as ISO 8601 in UTC and the payload as a JSON object.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from django.db import connection, transaction

from .. import conf
from .models import EventLog

SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.int64(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("version", pa.int16(), nullable=False),
        pa.field("aggregate_type", pa.string(), nullable=False),
        pa.field("aggregate_id", pa.string(), nullable=False),
        pa.field("owner_id", pa.int64()),
        pa.field("committed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("logged_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("payload", pa.string(), nullable=False),  # the event's JSON, as text
    ]
)
# Timestamps travel as microseconds since the epoch: an int64 column becomes an Arrow timestamp
# without a Python datetime per value (the slow part of a naive export). The payload as text,
# never parsed into dicts and dumped again.
SELECT = (
    "SELECT event_id, type, version, aggregate_type, aggregate_id, owner_id, "
    "(extract(epoch FROM committed_at) * 1000000)::bigint, "
    "(extract(epoch FROM logged_at) * 1000000)::bigint, payload::text FROM {table}"
)
Progress = Callable[[int], Any]


@dataclass(frozen=True)
class Selection:
    """Which rows: [since, until) by commit time, of a type, of an owner; from the log, or from
    one (detached) partition table when archiving."""

    since: datetime | None = None
    until: datetime | None = None
    type: str | None = None
    owner_id: int | None = None
    table: str = EventLog._meta.db_table

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for sql, value in (
            ("committed_at >= %s", self.since),
            ("committed_at < %s", self.until),
            ("type = %s", self.type),
            ("owner_id = %s", self.owner_id),
        ):
            if value is not None:
                clauses.append(sql)
                params.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def sql(self) -> tuple[str, list[Any]]:
        where, params = self.where()
        return SELECT.format(table=self.table) + where, params

    def count(self) -> int:
        where, params = self.where()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {self.table}{where}", params)  # noqa: S608
            return int(cursor.fetchone()[0])


def chunks(selection: Selection, size: int | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """The selected rows, `size` at a time, from a server-side cursor (one transaction)."""
    size = size or conf.get("EVENTLOG_EXPORT_CHUNK")
    sql, params = selection.sql()
    with transaction.atomic(), _no_cycle_collection():
        connection.ensure_connection()
        # Binary: integers and timestamps arrive without being parsed from text.
        with connection.connection.cursor(name="eventlog_export", binary=True) as cursor:
            cursor.itersize = size
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(size):
                yield rows


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while rows stream: every chunk is tens of thousands of new
    tuples, which set off collections that walk all of them again, though rows of plain values
    cannot form a cycle (measured: half the export's time). Reference counting still frees each
    chunk as soon as the next replaces it, so memory stays flat."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def record_batch(rows: list[tuple[Any, ...]]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = []
    for field, values in zip(SCHEMA, columns, strict=True):
        if pa.types.is_timestamp(field.type):
            arrays.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def write_parquet(selection: Selection, out: Path, progress: Progress | None = None) -> int:
    """Write the selection to a Parquet file (zstd); returns the number of rows written."""
    written = 0
    with replacing(out) as partial, pq.ParquetWriter(partial, SCHEMA, compression="zstd") as writer:
        for rows in chunks(selection):
            writer.write_batch(record_batch(rows))  # one row group per chunk: nothing accumulates
            written += len(rows)
            if progress:
                progress(len(rows))
    return written


def write_jsonl(selection: Selection, out: Path, progress: Progress | None = None) -> int:
    """Write the selection as JSON Lines; returns the number of rows written."""
    written = 0
    names = [f.name for f in SCHEMA]
    with replacing(out) as partial, open(partial, "w", encoding="utf-8") as file:
        for rows in chunks(selection):
            lines = []
            for row in rows:
                record = dict(zip(names[:-1], row[:-1], strict=True))
                for key in ("committed_at", "logged_at"):
                    record[key] = _iso(record[key])
                # The payload's own JSON text goes in as it is: no parse and dump per row.
                lines.append(f'{json.dumps(record)[:-1]}, "payload": {row[-1]}}}\n')
            file.writelines(lines)
            written += len(rows)
            if progress:
                progress(len(rows))
    return written


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(micros: int) -> str:
    return (EPOCH + timedelta(microseconds=micros)).isoformat()  # exact, unlike a float division


class replacing:
    """Write to `<out>.partial` and rename over `out` only once complete: an export that fails
    half-way leaves no truncated file where a finished one is expected."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        return self.partial

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            os.replace(self.partial, self.out)
        else:
            self.partial.unlink(missing_ok=True)
