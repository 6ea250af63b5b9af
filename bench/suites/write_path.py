"""The write suite: `PUT /api/tasks/{id}/complete/` requests/s and p50/p99 latency, from
concurrent clients in a separate process (300 completions from 8 quick, 3,000 from 16
full), against gunicorn with 4 workers.

Baseline, same server and run: the same DRF viewset with `complete` replaced by the seed's
naive path (bench/naive.py: save, then one `apply_async` per subscriber inline).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from rest_framework.authtoken.models import Token

from outbox.models import OutboxEvent
from tasks_app.models import Project, Task

from ..load import generate
from ..processes import ROOT, bench_env, cpu_seconds
from .common import Row, bench_user, percentile, reset

OURS, NAIVE = "/api/tasks/{id}/complete/", "/bench/naive/tasks/{id}/complete/"


@contextmanager
def server(**env: str) -> Iterator[tuple[str, int]]:
    """gunicorn with bench/settings.py (the product's URLs plus the naive path), ready;
    yields its base URL and pid, and stops it however the block ends. `env` adds to its
    environment."""
    # A port of its own per run: a server left over from an aborted run cannot answer for it.
    port = 18000 + int(time.time() * 10) % 1000
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "selfos.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "4",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=bench_env(DJANGO_SETTINGS_MODULE="bench.settings", **env),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


def run(quick: bool) -> list[Row]:
    n, concurrency = (300, 8) if quick else (3000, 16)
    reset()
    user = bench_user()
    token, _ = Token.objects.get_or_create(user=user)
    project = Project.objects.create(owner=user, title="write path")
    tasks = Task.objects.bulk_create(
        [Task(owner=user, project=project, title=f"write {i}") for i in range(2 * n + 2 * concurrency)]
    )
    ids = [str(t.pk) for t in tasks]
    with server() as (base, pid):
        # Warm both paths (connections, imports) outside the measurement.
        generate(base, OURS, token.key, ids[:concurrency], concurrency)
        generate(base, NAIVE, token.key, ids[concurrency : 2 * concurrency], concurrency)
        rest = ids[2 * concurrency :]
        before = cpu_seconds(pid)
        naive = generate(base, NAIVE, token.key, rest[n:], concurrency)
        between = cpu_seconds(pid)
        ours = generate(base, OURS, token.key, rest[:n], concurrency)
        after = cpu_seconds(pid)
    assert not ours["errors"] and not naive["errors"], (ours["errors"], naive["errors"])
    assert OutboxEvent.objects.count() == n + concurrency  # one event per completion through our path

    def figures(result: dict[str, Any]) -> tuple[float, float, float]:
        return (
            n / result["wall"],
            percentile(result["latencies"], 50) * 1000,
            percentile(result["latencies"], 99) * 1000,
        )

    (o_rps, o_p50, o_p99), (b_rps, b_p50, b_p99) = figures(ours), figures(naive)
    reset()
    label = f"{n} completions, {concurrency} concurrent"
    return [
        Row(
            bench="write path",
            figure=f"requests/s, {label}",
            value=o_rps,
            unit="req/s",
            baseline=b_rps,
            target=">= 0.9x",
            met=o_rps / b_rps >= 0.9,
        ),
        Row(
            bench="write path",
            figure="p50 latency",
            value=o_p50,
            unit="ms",
            baseline=b_p50,
        ),
        Row(
            bench="write path",
            figure="web CPU per completion (gunicorn's processes)",
            value=(after - between) / n * 1000,
            unit="ms",
            baseline=(between - before) / n * 1000,
        ),
        Row(
            bench="write path",
            figure="p99 latency",
            value=o_p99,
            unit="ms",
            baseline=b_p99,
            target="<= 1.2x",
            met=o_p99 / b_p99 <= 1.2,
        ),
    ]
