"""The cluster's part of the report: the faults and their recovery, then the per-host figures.

Printed after bench.chaos's table (completions, effects per kind, lost, duplicated, dead,
the verdict), whose wording runs are compared by.
"""

from __future__ import annotations

from typing import Any

from .faults import ClusterFault


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_cluster(faults: list[ClusterFault], steady: dict[str, Any], figures: dict[str, Any]) -> None:
    lag = steady["lag_before_faults_s"]
    print(
        f"steady state before the faults: commit to last delivery median {_s(lag['median'])}s, "
        f"p95 {_s(lag['p95'])}s, max {_s(lag['max'])}s ({steady['events_before_faults']} events)"
    )
    print(
        "faults: lasted / API 200 after heal / every stage working after heal / worst lag during / "
        "relay lag during / drained after heal (s)"
    )
    for fault in faults:
        f = fault.figures
        api = None if fault.api_back_s is None else fault.api_back_s - fault.seconds
        stages = None if fault.pipeline_back_s is None else fault.pipeline_back_s - fault.seconds
        print(
            f"  {fault.kind:<20} {fault.host:<7} {_s(fault.seconds)} / {_s(api)} / {_s(stages)} / "
            f"{_s(f.get('lag_max_during_s'))} / {_s(f.get('relay_lag_max_during_s'))} / "
            f"{_s(f.get('drained_after_heal_s'))}"
            + (" NOT HEALED" if fault.healed_at is None else "")
            + (f" FAILED: {fault.error}" if fault.error else "")
        )
        print(f"      {fault.detail}")
        extra = {
            k: v
            for k, v in f.items()
            if k not in ("lag_max_during_s", "relay_lag_max_during_s", "drained_after_heal_s")
        }
        if extra:
            print(f"      {', '.join(f'{k} {v}' for k, v in extra.items())}")
    print(
        f"throughput: {figures['completions_committed']} completions committed in "
        f"{figures['commit_window_s']}s = {_s(figures['completions_per_s'])}/s, "
        f"{_s(figures['deliveries_per_s'])} deliveries/s, outbox rows written "
        f"{_s(figures['outbox_rows_per_s'])}/s {figures['outbox_rows']}"
    )
    print("per host: completions or deliveries (per s), CPU s over load and drain, CPU ms per completion")
    for host, h in figures["hosts"].items():
        if "completions" in h:
            work = f"{h['completions']} completions ({_s(h['completions_per_s'])}/s)"
            if h["refused_or_failed_answers"]:
                work += f", {h['refused_or_failed_answers']} answers not 200 (retried)"
        elif "deliveries" in h:
            work = f"{h['deliveries']} deliveries ({_s(h['deliveries_per_s'])}/s)"
        else:
            work = ", ".join(f"{k} {v}s" for k, v in h.get("cpu_s_by_command", {}).items())
        print(
            f"  {host:<7} {work:<40} cpu {h['cpu_s']:>6.1f}s  {_s(h['cpu_ms_per_completion'])} ms/completion"
        )
    print("per kind of host: CPU ms per completion, and completions/s one core of it carries")
    for role, r in figures["roles"].items():
        print(
            f"  {role:<7} {r['hosts']} host(s)  {_s(r['cpu_ms_per_completion'])} ms/completion  "
            f"{_s(r['completions_per_s_per_core'])}/s per core"
        )
    print(f"  all     {figures['cpu_s_total']}s CPU in all, this machine's 2 cores shared by every host")
