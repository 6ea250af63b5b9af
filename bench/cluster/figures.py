"""The cluster's figures, read from the database after the run settled, and the CPU meter's.

Recovery per fault, besides bench.chaos's (first API 200 and first work of every stage
after the heal):
- lag_max_during_s: the slowest event committed while the fault lasted, from its commit to
  its last delivery done (what a user waited, at worst, for everything a completion does);
- drained_after_heal_s: from the heal until the last delivery of every event committed
  before it was done; negative when the cluster had caught up before the host was whole;
- relay_lag_max_during_s: the slowest commit-to-relayed (dispatched) of those events: the
  relay's part, which shows relay2 taking over and the web host's events waiting for beat.

Per host: completions answered by each web host, deliveries done by each worker host (the
`worker` column of the delivery attempts), CPU seconds of each host over the load and the
drain, and what that makes per completion: the cost, and the completions/s one core of that
kind of host carries.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .faults import CUT_BROKER, CUT_WORKER, ClusterFault
from .load import HostLoad

ROLES = {"web": ("web1", "web2"), "relay": ("relay1", "relay2"), "worker": ("work1", "work2", "work3")}


def _events() -> list[tuple[str, float, float | None, float | None]]:
    """(task id, committed, relayed, last delivery done) of every task.completed event."""
    from django.db.models import Max

    from outbox.models import OutboxEvent
    from tasks_app.events import TASK_COMPLETED

    rows = (
        OutboxEvent.objects.filter(type=TASK_COMPLETED)
        .annotate(last=Max("deliveries__completed_at"))
        .values_list("payload", "created_at", "dispatched_at", "last")
    )
    return [
        (str(p["task_id"]), c.timestamp(), d.timestamp() if d else None, last.timestamp() if last else None)
        for p, c, d, last in rows
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {
        "median": _round(statistics.median(ordered)),
        "p95": _round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]),
        "max": _round(ordered[-1]),
    }


def fault_figures(faults: list[ClusterFault], shares: list[HostLoad], logs: Path) -> dict[str, Any]:
    """Fills each fault's `figures`; returns the steady state before the first fault."""
    from outbox.models import DeliveryAttempt

    events = _events()
    first = min((f.at for f in faults), default=float("inf"))
    steady = [last - c for _, c, _, last in events if c < first and last]
    by_host = {str(t.pk): share.host for share in shares for t in share.tasks}
    for fault in faults:
        healed = fault.healed_at or fault.at + fault.seconds
        during = [e for e in events if fault.at <= e[1] <= healed]
        before = [last for _, c, _, last in events if c <= healed and last]
        fault.figures.update(
            {
                "events_committed_during": len(during),
                "lag_max_during_s": _round(max((last - c for _, c, _, last in during if last), default=None)),
                "relay_lag_max_during_s": _round(max((d - c for _, c, d, _ in during if d), default=None)),
                "drained_after_heal_s": _round(max(before) - healed) if before else None,
            }
        )
        if fault.kind == CUT_BROKER:
            # Commits, and the answers the phones got: a kick stuck on the broker's dead
            # connection holds the request after its commit (see the README).
            mine = [e for e in during if by_host.get(e[0]) == fault.host]
            lags = [d - c for _, c, d, _ in mine if d]
            share = next(s for s in shares if s.host == fault.host)
            answered = [t for t in share.load.ok_at if fault.at <= t <= healed]
            fault.figures[f"{fault.host}_commits_during"] = len(mine)
            fault.figures[f"{fault.host}_answers_200_during"] = len(answered)
            fault.figures[f"{fault.host}_relay_lag_during_s"] = _spread(lags)
        if fault.kind == CUT_WORKER:
            attempts = DeliveryAttempt.objects.filter(worker__endswith=f"-{fault.host}")
            spanning = [
                (a.started_at.timestamp(), a.duration_ms / 1000, a.outcome)
                for a in attempts.filter(started_at__lte=_dt(healed)).only(
                    "started_at", "duration_ms", "outcome"
                )
            ]
            fault.figures["attempts_spanning_cut"] = sum(1 for s, d, _ in spanning if s < fault.at < s + d)
            fault.figures["attempts_started_while_cut"] = sum(1 for s, _, _ in spanning if s >= fault.at)
            # A handler cut off mid-transaction leaves no attempt row (its transaction died with
            # the connection the db host dropped): its worker logs it when the link is back.
            log = logs / f"{fault.host}-subscribers.log"
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            fault.figures["runs_cut_off_logged"] = sum("could not be recorded" in line for line in lines)
    return {"lag_before_faults_s": _spread(steady), "events_before_faults": len(steady)}


def _dt(timestamp: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)


def host_figures(shares: list[HostLoad], cpu: dict[str, float]) -> dict[str, Any]:
    """Throughput and CPU per host, and per completion."""
    from django.db.models import Count, Max, Min

    from outbox.models import Delivery, DeliveryAttempt, OutboxEvent
    from tasks_app.models import Task

    span = Task.objects.filter(status="completed").aggregate(
        n=Count("pk"), a=Min("completed_at"), b=Max("completed_at")
    )
    completed = span["n"] or 0
    seconds = (span["b"] - span["a"]).total_seconds() if completed > 1 else 0.0
    rate = completed / seconds if seconds else 0.0
    done = DeliveryAttempt.objects.filter(outcome="succeeded").values_list("worker", flat=True)
    deliveries: dict[str, int] = {}
    for worker in done:
        host = worker.rsplit("-", 1)[-1] if "@" in worker else worker
        deliveries[host] = deliveries.get(host, 0) + 1
    hosts: dict[str, dict[str, Any]] = {}
    for share in shares:
        busy = (share.finished or share.started) - share.started
        hosts[share.host] = {
            "completions": share.load.answered.get("200", 0),
            "completions_per_s": _round(share.load.answered.get("200", 0) / busy) if busy > 0 else None,
            "refused_or_failed_answers": sum(v for k, v in share.load.answered.items() if k != "200"),
        }
    for host in ROLES["worker"]:
        hosts[host] = {"deliveries": deliveries.get(host, 0)}
        hosts[host]["deliveries_per_s"] = _round(deliveries.get(host, 0) / seconds) if seconds else None
    for host in (*ROLES["relay"], "db"):
        hosts.setdefault(host, {})
    for host, figures in hosts.items():
        figures["cpu_s"] = round(cpu.get(host, 0.0), 1)
        figures["cpu_ms_per_completion"] = (
            _round(1000 * cpu.get(host, 0.0) / completed) if completed else None
        )
    roles: dict[str, Any] = {}
    for role, members in {**ROLES, "db": ("db",)}.items():
        spent = sum(cpu.get(h, 0.0) for h in members)
        per = spent / completed if completed else 0.0
        roles[role] = {
            "hosts": len(members),
            "cpu_s": round(spent, 1),
            "cpu_ms_per_completion": _round(1000 * per),
            "completions_per_s_per_core": _round(1 / per) if per else None,
        }
    rows = {
        "events": OutboxEvent.objects.count(),
        "deliveries": Delivery.objects.count(),
        "delivery_attempts": DeliveryAttempt.objects.count(),
    }
    return {
        "completions_committed": completed,
        "commit_window_s": round(seconds, 1),
        "completions_per_s": _round(rate),
        "deliveries_per_s": _round(sum(deliveries.values()) / seconds) if seconds else None,
        "outbox_rows": rows,
        "outbox_rows_per_s": _round(sum(rows.values()) / seconds) if seconds else None,
        "hosts": hosts,
        "roles": roles,
        "cpu_s_total": round(sum(cpu.values()), 1),
    }
