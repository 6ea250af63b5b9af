"""The tracing suite: what tracing costs the write path. `PUT /api/tasks/{id}/complete/` from
concurrent clients (as the write suite sends them) against two gunicorn servers in the same
run, taken in turns: tracing off (no collector named: the default) and tracing on
(SELFOS_TRACING, the OTLP/HTTP exporter sending to a loopback collector in this process, every
span kept: the request's, each query's, the relay kick's publish).

Reported: requests/s and p50 with tracing on against off, the web's CPU per completion (the
gunicorn processes' user + system time over the run, divided by the completions), and the
spans the collector received per completion. The off path against the code before tracing
(the write suite's figures at the commit before it) is in the README.
"""

from __future__ import annotations

import time
from typing import Any

from rest_framework.authtoken.models import Token

from tasks_app.models import Project, Task
from tests.loopback_otlp import LoopbackCollector

from ..load import generate
from ..processes import cpu_seconds
from .common import Row, bench_user, percentile, reset
from .write_path import OURS, server

ROUNDS = 2  # each server measured this many times, in turns, to even out drift


def run(quick: bool) -> list[Row]:
    n, concurrency = (200, 8) if quick else (1500, 16)
    reset()
    user = bench_user()
    token, _ = Token.objects.get_or_create(user=user)
    project = Project.objects.create(owner=user, title="tracing")
    ids = [
        str(t.pk)
        for t in Task.objects.bulk_create(
            [
                Task(owner=user, project=project, title=f"trace {i}")
                for i in range(2 * ROUNDS * n + 4 * concurrency)
            ]
        )
    ]
    figures: dict[str, dict[str, list[float]]] = {
        mode: {"wall": [], "latencies": [], "cpu": []} for mode in ("off", "on")
    }
    with LoopbackCollector() as collector:
        on_env = {
            "SELFOS_TRACING": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_SERVICE_NAME": "selfos-bench-web",
        }
        with server() as (off_url, off_pid), server(**on_env) as (on_url, on_pid):
            servers = {"off": (off_url, off_pid), "on": (on_url, on_pid)}
            for base, _ in servers.values():  # warm: connections, imports
                generate(base, OURS, token.key, [ids.pop() for _ in range(2 * concurrency)], concurrency)
            collector.clear()
            for _ in range(ROUNDS):
                for mode, (base, pid) in servers.items():
                    before = cpu_seconds(pid)
                    result: dict[str, Any] = generate(
                        base, OURS, token.key, [ids.pop() for _ in range(n)], concurrency
                    )
                    assert not result["errors"], result["errors"]
                    figures[mode]["cpu"].append(cpu_seconds(pid) - before)
                    figures[mode]["wall"].append(result["wall"])
                    figures[mode]["latencies"].extend(result["latencies"])
            # The batch processor sends every 5 s: wait out one more send for the last spans.
            time.sleep(6)
            spans = len(collector.spans)
    reset()
    total = ROUNDS * n

    def rate(mode: str) -> float:
        return total / sum(figures[mode]["wall"])

    def p50(mode: str) -> float:
        return percentile(figures[mode]["latencies"], 50) * 1000

    def cpu_ms(mode: str) -> float:
        return sum(figures[mode]["cpu"]) / total * 1000

    label = f"{total} completions, {concurrency} concurrent"
    return [
        Row(
            bench="tracing",
            figure=f"requests/s, tracing on vs off, {label}",
            value=rate("on"),
            unit="req/s",
            baseline=rate("off"),
        ),
        Row(
            bench="tracing",
            figure="p50 latency, tracing on vs off",
            value=p50("on"),
            unit="ms",
            baseline=p50("off"),
        ),
        Row(
            bench="tracing",
            figure="web CPU per completion, tracing on vs off",
            value=cpu_ms("on"),
            unit="ms",
            baseline=cpu_ms("off"),
        ),
        Row(
            bench="tracing",
            figure="spans received per completion (tracing on)",
            value=spans / total,
            unit="spans",
        ),
    ]
