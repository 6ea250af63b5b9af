"""The latency suite: seconds from a task.completed event's commit to its last delivery's
success, through the real relay, workers and beat, at a steady 5 completions/s with the
kick and with the beat schedule alone (1 s), at 15/s with the kick, and with the kick at
half the sustained rate (the sustained suite's figure from this run, else from the last
results) and at 50/s where that is at most half of it.

No baseline: the targets (p50 <= 100 ms, p99 <= 500 ms with the kick) are absolute, and
the beat-only rows show what the kick saves. The run at half the sustained rate is also
profiled: where its time goes (`bench.stages`: relay lag, each subscriber's queue wait and
batch run) and its CPU per completion by process, with how many cores were busy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.db.models import Max

from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Project, Task

from ..processes import Processes
from ..stages import stages_of
from .common import MEASURED, Row, bench_user, outbox_settings, paced, percentile, reset, wait_settled
from .sustained import cpu_seconds


def completion_latencies(since_id: int) -> dict[int, float]:
    """Seconds from each task.completed event's commit to its last delivery's success, by event id."""
    rows = (
        Delivery.objects.filter(
            event_id__gt=since_id, event__type="task.completed", status=Delivery.Status.SUCCEEDED
        )
        .values("event_id", "event__created_at")
        .annotate(last=Max("completed_at"))
    )
    return {r["event_id"]: (r["last"] - r["event__created_at"]).total_seconds() for r in rows}


def bench_tasks(count: int) -> list[Task]:
    """`count` open tasks of the bench user, over ten projects, made before any clock starts."""
    user = bench_user()
    projects = Project.objects.bulk_create(
        [Project(owner=user, title=f"bench project {i}") for i in range(10)]
    )
    return Task.objects.bulk_create(
        [
            Task(owner=user, project=projects[i % 10], title=f"Bench task {i}: write chapter {i % 37}")
            for i in range(count)
        ]
    )


def complete_all(tasks: list[Task], rate: float, kick: bool) -> dict[int, float]:
    """Complete `tasks` at `rate`, wait for their deliveries, return their latencies by event id."""
    since = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    # KICK is read by this process's publish on commit; the workers' settings are their own.
    with outbox_settings(KICK=kick):
        for task in paced(tasks, rate):
            services.complete_task(task, by=task.owner)
    wait_settled(120)
    return completion_latencies(since)


def run_completions(rate: float, seconds: float, kick: bool) -> dict[int, float]:
    """Complete `rate * seconds` new tasks at `rate`; their latencies by event id."""
    return complete_all(bench_tasks(int(rate * seconds)), rate, kick)


def sustained_rate() -> float | None:
    """The sustained suite's figure: from this run if it ran first, else from the last results."""
    if "sustained" in MEASURED:
        return MEASURED["sustained"]
    latest = Path(__file__).resolve().parent.parent / "results" / "latest.json"
    if latest.exists():
        for row in json.loads(latest.read_text())["results"]:
            if row["bench"] == "sustained" and row["figure"].startswith("completions/s"):
                return float(row["value"])
    return None


def steady_rates(quick: bool) -> list[tuple[float, bool]]:
    """(rate, kick) pairs to measure; beyond the fixed ones, half the sustained rate and 50/s."""
    rates: list[tuple[float, bool]] = [(5, True), (5, False), (15, True)]
    if quick:
        return rates
    if sustained := sustained_rate():
        half = sustained / 2
        rates += [(half, True)] if half not in (5, 15) else []
        rates += [(50, True)] if half > 50 else []
    return rates


def profile_rows(
    rate: float, latencies: dict[int, float], cpu_ms: dict[str, float], cores: float
) -> list[Row]:
    """Where the time of a run went: stage medians, and CPU per completion by process."""
    stages = stages_of(list(latencies))
    bench = f"latency at {rate:g}/s"
    rows = [
        Row(bench=bench, figure="relay lag (commit to dispatch), p50", value=stages.relay_lag_ms, unit="ms")
    ]
    for sub in stages.subscribers:
        rows += [
            Row(
                bench=bench,
                figure=f"{sub.name}: queue wait (dispatch to start), p50",
                value=sub.wait_ms,
                unit="ms",
            ),
            Row(
                bench=bench,
                figure=f"{sub.name}: batch run (start to commit), p50, {sub.per_message:.1f} per message,"
                f" last to finish {sub.last_share:.0%}",
                value=sub.run_ms,
                unit="ms",
            ),
        ]
    rows += [
        Row(bench=bench, figure=f"CPU per completion: {name}", value=ms, unit="ms")
        for name, ms in cpu_ms.items()
    ]
    return [*rows, Row(bench=bench, figure="cores busy", value=cores)]


def profiled(
    workers: dict[str, Any], tasks: list[Task], rate: float, kick: bool
) -> tuple[dict[int, float], list[Row]]:
    """complete_all(), and the run's profile: stage medians, CPU per completion by process (from the
    first completion to the last delivery) and the cores busy meanwhile."""
    cpu_before, clock = cpu_seconds(workers), time.monotonic()
    latencies = complete_all(tasks, rate, kick)
    if not latencies:
        return latencies, []
    used = {name: s - cpu_before[name] for name, s in cpu_seconds(workers).items()}
    cpu_ms = {name: s / len(latencies) * 1000 for name, s in used.items()}
    cpu_ms["all processes"] = sum(used.values()) / len(latencies) * 1000
    return latencies, profile_rows(rate, latencies, cpu_ms, sum(used.values()) / (time.monotonic() - clock))


def run(quick: bool) -> list[Row]:
    reset()
    rows: list[Row] = []
    profile: list[Row] = []
    with Processes() as procs:
        workers = procs.service()
        # Warm-up: every prefork process loads the model and opens its connections.
        run_completions(rate=5, seconds=4, kick=True)
        half = (sustained_rate() or 0) / 2
        for rate, kick in steady_rates(quick):
            tasks = bench_tasks(int(rate * (2 if quick else 20)))
            latencies, run_profile = profiled(workers, tasks, rate, kick)
            if kick and rate == half and not quick:
                profile = run_profile
            values = list(latencies.values())
            label = "with kick" if kick else "beat only (1 s)"
            for p, target_ms in ((50, 100), (99, 500)):
                ms = percentile(values, p) * 1000
                rows.append(
                    Row(
                        bench="end to end",
                        figure=f"p{p}, {rate:g}/s, {label}",
                        value=ms,
                        unit="ms",
                        target=f"<= {target_ms} ms" if kick else "-",
                        met=ms <= target_ms if kick else None,
                    )
                )
    return rows + profile
