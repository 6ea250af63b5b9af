"""The verdict on screen (a table, recovery per fault, the first findings) and as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .effects import Outcome, repeated_pushes


def print_report(outcome: Outcome) -> None:
    # Runs are compared by these lines (the README quotes their figures): keep their wording.
    answered = outcome.answered
    by_kind = outcome.by_kind
    exits = outcome.exits
    dead = outcome.dead
    rows: list[tuple[str, Any]] = [
        ("completions asked", outcome.count),
        ("API answers 200 / 503 / error", f"{answered['200']} / {answered['503']} / {answered['error']}"),
        ("tasks completed", outcome.completed),
        (
            "faults injected",
            f"{len(outcome.faults)} ({', '.join(f'{k} x{n}' for k, n in sorted(by_kind.items()))})",
        ),
        ("faults that could not be injected", len(outcome.failed_faults)),
        ("processes that exited on their own", f"{len(exits)} {', '.join(exits)}".strip()),
        ("settled", "yes" if outcome.settled else "NO"),
        ("deleted mid-load: tasks / accounts", f"{outcome.tasks_deleted} / {outcome.accounts_deleted}"),
    ]
    rows += [
        (
            f"  {name}",
            f"expected {e.expected}, present {e.present}, lost {e.lost}, duplicated {e.duplicated}"
            + (f", UNEXPECTED {e.unexpected}" if e.unexpected else ""),
        )
        for name, e in outcome.effects.items()
    ]
    rows += [
        (f"  traces of what was deleted: {name}", n if not n else f"{n} LEFT")
        for name, n in outcome.traces_left.items()
    ]
    rows += [("  a delete the API would not take", error) for error in outcome.delete_errors]
    rows += [
        ("  pushes re-sent under the same collapse id (shown once)", outcome.resent),
        ("lost (effects)", outcome.lost),
        ("duplicated (effects)", outcome.duplicated),
        ("audit violations", sum(len(v) for v in outcome.violations.values())),
        ("dead deliveries", f"{sum(dead.values())} {dict(sorted(dead.items())) if dead else ''}".strip()),
        ("verdict", "PASS" if outcome.ok else "FAIL"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("recovery, s from each fault's start: database answers / API 200 / all stages work again")
    for fault in outcome.faults:
        figures = " / ".join(
            "-" if v is None else f"{v:.1f}"
            for v in (fault.database_back_s, fault.api_back_s, fault.pipeline_back_s)
        )
        extra = f" ({fault.slowest_stage} last)" if fault.slowest_stage else ""
        extra += f" ({fault.detail})" if fault.detail else ""
        print(f"  {fault.kind:<18} {figures}{extra}{' FAILED: ' + fault.error if fault.error else ''}")
    for name, lines in outcome.violations.items():
        print(f"  FAIL {name}: {lines[:3]}")
    for line in outcome.dead_lines[:5]:
        print(f"  DEAD {line[:300]}")
    for (subject, token), ids in repeated_pushes(outcome.pushed)[:5]:
        # The same id twice: the device replaces the first; two ids: the user sees it twice.
        what = "RE-SENT (shown once)" if len(set(ids)) == 1 else "PUSHED TWICE"
        print(f"  {what} {subject[0]} {subject[1]} to {token}: collapse ids {ids}")


def write_json(outcome: Outcome, path: Path) -> None:
    path.write_text(json.dumps(outcome_json(outcome), indent=2))


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """The figures as JSON-ready data (bench.cluster adds its own to them)."""
    # tests/test_chaos.py and tests/test_cluster.py assert on these keys: keep them.
    return {
        "completions_asked": outcome.count,
        "tasks_completed": outcome.completed,
        "answers": outcome.answered,
        "settled": outcome.settled,
        "faults": [asdict(f) for f in outcome.faults],
        "faults_by_kind": dict(outcome.by_kind),
        "exited_on_their_own": outcome.exits,
        "effects": {k: asdict(v) for k, v in outcome.effects.items()},
        "lost": outcome.lost,
        "duplicated": outcome.duplicated,
        "unexpected": outcome.unexpected,
        "pushes_resent_same_collapse_id": outcome.resent,
        "dead": sum(outcome.dead.values()),
        "dead_by_subscriber": dict(outcome.dead),
        "audit_violations": outcome.violations,
        "tasks_deleted": outcome.tasks_deleted,
        "accounts_deleted": outcome.accounts_deleted,
        "traces_left": outcome.traces_left,
        "delete_errors": outcome.delete_errors,
        "ok": outcome.ok,
    }
