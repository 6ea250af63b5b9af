"""The event log suite: export and feed over a log of 1,000,000 rows (100,000 quick), spread
over 12 monthly partitions and 1,000 owners.

- Export to Parquet (`outbox.eventlog.export`, server-side cursor, pyarrow) in a process of its
  own, against the baseline of a raw `COPY (SELECT ...) TO STDOUT` of the same rows, same run.
- The exporter's peak RSS exporting 1/10 of the rows and all of them: it must stay flat.
- `GET /api/events/` for one user's latest 50 (DRF in process, token auth, 1/100 of the rows
  theirs): p95 latency.

The write path with the log is measured by the `write` suite (publish() logs every event).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from outbox.eventlog import export, partitions

from ..processes import ROOT, bench_env
from .common import MIB, Row, bench_user, percentile

CHILD = """
import json, resource, sys, time
from datetime import datetime
from pathlib import Path
import django
django.setup()
from outbox.eventlog import export
since, until = (datetime.fromisoformat(a) for a in sys.argv[1:3])
selection = export.Selection(since=since, until=until)
started = time.perf_counter()
rows = export.write_parquet(selection, Path(sys.argv[3]))
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss": peak}))
"""


def fill(n: int, owner: int) -> tuple[datetime, datetime]:
    """n log rows over the 12 months up to now; returns the [since, until) that holds them all."""
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=365)
    month = partitions.month_of(start)
    while month <= partitions.month_of(end):
        partitions.ensure(ahead=0, today=month)
        month = partitions.month_of(datetime(month.year, month.month, 28) + timedelta(days=7))
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE outbox_eventlog")
        cursor.execute(
            """
            INSERT INTO outbox_eventlog (event_id, committed_at, logged_at, type, version,
                aggregate_type, aggregate_id, owner_id, payload)
            SELECT 1000000000000 + i, t, t,
                CASE WHEN i %% 10 = 0 THEN 'task.reopened' ELSE 'task.completed' END, 1,
                'tasks_app.task', md5(i::text)::uuid::text, o,
                jsonb_build_object('task_id', md5(i::text)::uuid, 'user_id', o,
                    'project_id', md5((i / 20)::text)::uuid, 'completed_at', t,
                    'type', 'task.completed', 'version', 1)
            FROM (SELECT i, %s + (i * %s::interval) AS t,
                         CASE WHEN i %% 100 = 0 THEN %s ELSE 2000000000 + i %% 999 END AS o
                  FROM generate_series(0, %s - 1) AS i) AS g
            """,
            [start, timedelta(days=365) / n, owner, n],
        )
        cursor.execute("ANALYZE outbox_eventlog")
    return start, end + timedelta(seconds=1)


def copy_rate(selection: export.Selection) -> tuple[int, float]:
    """Rows and seconds of a raw COPY of the same SELECT to this process, discarded as it comes."""
    sql, params = selection.sql()
    connection.ensure_connection()
    started = time.perf_counter()
    lines = 0
    with connection.connection.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT", params) as copy:
        for block in copy:
            lines += bytes(block).count(b"\n")
    return lines, time.perf_counter() - started


def export_in_child(since: datetime, until: datetime) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "events.parquet"
        result = subprocess.run(
            [sys.executable, "-c", CHILD, since.isoformat(), until.isoformat(), str(out)],
            cwd=ROOT,
            env=bench_env(),
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def feed_latencies(user: object, requests: int) -> list[float]:
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    latencies = []
    for i in range(requests + 10):
        started = time.perf_counter()
        response = client.get("/api/events/", {"page_size": 50})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200 and len(response.json()["results"]) == 50
        if i >= 10:  # the first ones warm connections and caches
            latencies.append(elapsed)
    return latencies


def run(quick: bool) -> list[Row]:
    n = 100_000 if quick else 1_000_000
    user = bench_user()
    since, until = fill(n, user.pk)
    everything = export.Selection(since=since, until=until)
    copied, copy_seconds = copy_rate(everything)
    assert copied == n, (copied, n)
    with connection.cursor() as cursor:  # the latest tenth of the rows, for the RSS comparison
        cursor.execute(
            "SELECT committed_at FROM outbox_eventlog ORDER BY committed_at DESC OFFSET %s LIMIT 1", [n // 10]
        )
        tenth_since = cursor.fetchone()[0]
    small = export_in_child(tenth_since, until)
    full = export_in_child(since, until)
    assert full["rows"] == n, full
    latencies = feed_latencies(user, 100 if quick else 300)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE outbox_eventlog")
    export_rate, raw_rate = n / full["seconds"], n / copy_seconds
    p95 = percentile(latencies, 95) * 1000
    return [
        Row(
            bench="event log",
            figure=f"export to Parquet, {n:,} rows (baseline: raw COPY of the same rows)",
            value=export_rate,
            unit="rows/s",
            baseline=raw_rate,
            target=">= 0.25x",
            met=export_rate / raw_rate >= 0.25,
        ),
        Row(
            bench="event log",
            figure=f"exporter peak RSS, {n:,} rows (baseline: {small['rows']:,} rows)",
            value=full["peak_rss"] / MIB,
            unit="MiB",
            baseline=small["peak_rss"] / MIB,
            target="<= 1.1x (flat)",
            met=full["peak_rss"] <= 1.1 * small["peak_rss"],
        ),
        Row(
            bench="event log",
            figure=f"GET /api/events/ latest 50, p95 ({n:,} rows in the log)",
            value=p95,
            unit="ms",
            target="<= 20 ms",
            met=p95 <= 20,
        ),
        Row(bench="event log", figure="feed p50", value=percentile(latencies, 50) * 1000, unit="ms"),
    ]
