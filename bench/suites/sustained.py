"""The sustained suite: the highest steady completion rate (2, 4, 8/s quick; 4 to 48/s
full) whose backlog drains within 5 s of the load ending, all four real subscribers on the
Procfile's workers; then, at that rate, CPU ms per completion by process.

Baseline, same run: the same system with one delivery per message
(`OUTBOX_MESSAGE_BATCH_SIZE=1`) instead of 100.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import psutil

from tasks_app import services
from tasks_app.models import Project, Task

from ..processes import Processes, process_tree, summed
from .common import Row, bench_user, outbox_settings, paced, reset, wait_settled

DRAIN_SECONDS = 5  # a rate whose backlog takes longer than this to drain is not sustained


def backlog_after(rate: float, seconds: float) -> float:
    """Complete at `rate` for `seconds`; return how long the outbox then takes to drain (s)."""
    user = bench_user()
    project = Project.objects.create(owner=user, title=f"sustained {rate}")
    tasks = Task.objects.bulk_create(
        [
            Task(owner=user, project=project, title=f"Sustained {i}: chapter {i % 41}")
            for i in range(int(rate * seconds))
        ]
    )
    for task in paced(tasks, rate):
        services.complete_task(task, by=user)
    ended = time.monotonic()
    wait_settled(300)
    return time.monotonic() - ended


def cpu_seconds(workers: dict[str, Any]) -> dict[str, float]:
    """CPU time used so far, by who used it: each worker's process tree, PostgreSQL's and
    Redis's processes, and this process (which writes the completions)."""

    def used(procs: list[Any]) -> float:
        return summed(procs, lambda proc: sum(proc.cpu_times()[:2]))  # user + system

    servers: dict[str, list[Any]] = {"postgres": [], "redis": []}
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        if name.startswith("postgres"):
            servers["postgres"].append(proc)
        elif name.startswith("redis-server"):
            servers["redis"].append(proc)
    figures = {name: used(process_tree(popen.pid)) for name, popen in workers.items()}
    figures.update({name: used(procs) for name, procs in servers.items()})
    figures["bench (the writes)"] = used([psutil.Process()])
    return figures


def best_rate(batch: int, rates: tuple[int, ...], seconds: float) -> tuple[int, dict[str, float]]:
    """The highest of `rates` sustained with `batch` deliveries per message, trying them in
    order until one is not; and, for batch 100, CPU ms per completion at that rate."""
    reset()
    best, profile = 0, {}
    with Processes() as procs:
        workers = procs.service(OUTBOX_MESSAGE_BATCH_SIZE=str(batch))
        # The workers take the batch size from the environment; this process, from OUTBOX.
        with outbox_settings(MESSAGE_BATCH_SIZE=batch):
            backlog_after(4, 3)  # warm-up
            for rate in rates:
                lag = backlog_after(rate, seconds)
                print(
                    f"bench: sustained, {batch} per message, {rate}/s: drained {lag:.1f}s after",
                    file=sys.stderr,
                )
                if lag > DRAIN_SECONDS:
                    break
                best = rate
            if batch == 100 and best:
                before, started = cpu_seconds(workers), time.monotonic()
                backlog_after(best, seconds)
                wall, after = time.monotonic() - started, cpu_seconds(workers)
                count = best * seconds
                profile = {name: (after[name] - before[name]) / count * 1000 for name in after}
                profile["cores busy"] = sum(after[n] - before[n] for n in after) / wall
    return best, profile


def run(quick: bool) -> list[Row]:
    rates = (2, 4, 8) if quick else (4, 8, 12, 16, 20, 24, 32, 48)
    seconds = 5 if quick else 15
    single, _ = best_rate(1, rates, seconds)
    batched, profile = best_rate(100, rates, seconds)
    reset()
    ratio = batched / single if single else None
    return [
        Row(
            bench="sustained",
            figure="completions/s with no growing backlog, all four subscribers",
            value=float(batched),
            unit="/s",
            baseline=float(single),
            target=">= 5x and >= 200/s",
            met=bool(ratio and ratio >= 5 and batched >= 200),
        ),
    ] + [
        Row(
            bench="sustained",
            figure=f"at {batched:g}/s, "
            + ("cores busy" if name == "cores busy" else f"CPU per completion: {name}"),
            value=value,
            unit="" if name == "cores busy" else "ms",
        )
        for name, value in profile.items()
    ]
