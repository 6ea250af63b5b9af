"""What the run left behind: each effect counted from the tables and the loopback FCM, the
recovery time per fault, and the verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .deletes import Forgotten, traces_left
from .faults import Fault
from .traffic import Load

SUBSCRIBERS = ("progress", "story", "notifications", "memory")


@dataclass
class Effect:
    expected: int = 0
    present: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0  # rows for something that should have none (a task never completed)


def _tally(effect: Effect, expected: set[Any], found: Iterable[Any]) -> Effect:
    """Compare the keys an effect should have (one each) with the rows found."""
    counts = Counter(found)
    effect.expected += len(expected)
    effect.present += sum(counts.values())
    effect.lost += len(expected - set(counts))
    effect.duplicated += sum(n - 1 for n in counts.values() if n > 1)
    effect.unexpected += len(set(counts) - expected)
    return effect


def count_effects(pushed: list[dict[str, Any]], forgotten: Forgotten | None = None) -> dict[str, Effect]:
    """What the subscribers left, counted from their tables and the FCM's record, not the attempt log.

    What the user deleted is expected nowhere: a row left about it counts as unexpected. Only
    what was rightly there before the delete is set aside: the deleted task's events (they
    stay in the outbox, ids only, until retention), their progress snapshots (project
    history), and the pushes FCM took before the delete (a device cannot be un-pushed).
    """
    forgotten = forgotten or Forgotten()
    from outbox.models import OutboxEvent
    from tasks_app.events import TASK_COMPLETED, TASK_DELETED
    from tasks_app.models import Project, Task
    from workers.events import PROJECT_COMPLETED
    from workers.models import Device, MemoryEntry, Notification, ProgressSnapshot, PushReceipt, StorySegment

    completed = {str(pk) for pk in Task.objects.filter(status="completed").values_list("pk", flat=True)}
    events = [
        (event_id, payload)
        for event_id, payload in OutboxEvent.objects.filter(type=TASK_COMPLETED).values_list("id", "payload")
        if payload.get("task_id") not in forgotten.tasks
    ]
    # A deleted task's completion, and the delete itself, each got a snapshot of its project.
    forgotten_events = set(
        OutboxEvent.objects.filter(
            type__in=[TASK_COMPLETED, TASK_DELETED], aggregate_id__in=forgotten.tasks
        ).values_list("id", flat=True)
    )
    gone_tokens = {a.device_token for a in forgotten.accounts}
    pushed = [
        m for m in pushed if m["token"] not in gone_tokens and m["data"].get("task_id") not in forgotten.tasks
    ]
    finished = {
        p["project_id"]
        for p in OutboxEvent.objects.filter(type=PROJECT_COMPLETED).values_list("payload", flat=True)
    }
    segments = list(StorySegment.objects.values_list("kind", "subject_id"))
    notes = list(Notification.objects.values_list("pk", "kind", "data", "owner_id"))
    devices: dict[int, list[tuple[Any, str]]] = {}
    for pk, token, owner in Device.objects.values_list("pk", "token", "owner_id"):
        devices.setdefault(owner, []).append((pk, token))
    # Pushes are keyed by what they announce, not by notification id: a notification made
    # again (its first row rolled back after the push went out) is a second push all the same.
    # Each goes to its owner's devices.
    owners = {("task", str(pk)): o for pk, o in Task.objects.values_list("pk", "owner_id")}
    owners |= {("project", str(pk)): o for pk, o in Project.objects.values_list("pk", "owner_id")}
    announced = {("task", t) for t in completed} | {("project", p) for p in finished}
    push_pairs = {
        (subject, token) for subject in announced for _, token in devices.get(owners.get(subject), [])
    }
    receipt_pairs = {(str(n), str(d)) for n, _, _, owner in notes for d, _ in devices.get(owner, [])}
    device_count = sum(len(d) for d in devices.values())
    effects = {
        "task.completed events (one per task)": _tally(
            Effect(), completed, (p["task_id"] for _, p in events)
        ),
        "story segments (one per task)": _tally(
            Effect(), completed, (str(s) for kind, s in segments if kind == "task")
        ),
        "story chapters (one per finished project)": _tally(
            Effect(), finished, (str(s) for kind, s in segments if kind == "project")
        ),
        "memory rows (one per task)": _tally(
            Effect(), completed, (str(t) for t in MemoryEntry.objects.values_list("task_id", flat=True))
        ),
        "progress snapshots (one per event)": _tally(
            Effect(),
            {e for e, _ in events},
            ProgressSnapshot.objects.exclude(event_id__in=forgotten_events).values_list(
                "event_id", flat=True
            ),
        ),
        "notifications (one per task and finished project)": _tally(
            _tally(Effect(), completed, (d.get("task_id") for _, k, d, _ in notes if k == TASK_COMPLETED)),
            finished,
            (d.get("project_id") for _, k, d, _ in notes if k == PROJECT_COMPLETED),
        ),
        # What the loopback FCM received (a receipt row cannot show a push sent twice), keyed by
        # what it announces: a second push under another collapse id is one the user sees twice.
        # A re-send under the same collapse id replaces the first on the device: see `resent_pushes`.
        f"pushes shown (one per notification and device, {device_count} devices)": _tally(
            Effect(), push_pairs, ((subject, token) for subject, token, _ in set(_pushes(pushed)))
        ),
        "push receipts (one per notification and device)": _tally(
            Effect(),
            receipt_pairs,
            ((str(n), str(d)) for n, d in PushReceipt.objects.values_list("notification_id", "device_id")),
        ),
    }
    return effects


def _announces(data: dict[str, str]) -> tuple[str, str]:
    """What a push is about, from the data the notification gave it."""
    if "task_id" in data:
        return ("task", data["task_id"])
    return ("project", data.get("project_id", ""))


def _pushes(pushed: list[dict[str, Any]]) -> list[tuple[tuple[str, str], str, str]]:
    """(what it announces, device token, collapse id) of each message FCM received."""
    return [(_announces(m["data"]), m["token"], m["data"]["notification_id"]) for m in pushed]


def resent_pushes(pushed: list[dict[str, Any]]) -> int:
    """Messages FCM received again under a collapse id it already had for that device."""
    return len(pushed) - len(set(_pushes(pushed)))


def repeated_pushes(pushed: list[dict[str, Any]]) -> list[tuple[tuple[tuple[str, str], str], list[str]]]:
    by_pair: dict[tuple[tuple[str, str], str], list[str]] = {}
    for subject, token, collapse_id in _pushes(pushed):
        by_pair.setdefault((subject, token), []).append(collapse_id)
    return [(pair, ids) for pair, ids in by_pair.items() if len(ids) > 1]


def measure_recovery(faults: list[Fault], load: Load) -> None:
    """Per fault, seconds from its start until the API answered 200 again, and until every stage
    (the relay, each subscriber) had finished some work again after it. Not the delivery lag:
    with a backlog, new events wait behind old ones however well the service recovered."""
    from outbox.models import Delivery, OutboxEvent

    stages: dict[str, list[float]] = {"relay": []}
    for at in OutboxEvent.objects.exclude(dispatched_at=None).values_list("dispatched_at", flat=True):
        stages["relay"].append(at.timestamp())
    for name, at in Delivery.objects.filter(status="succeeded").values_list("subscriber", "completed_at"):
        stages.setdefault(name, []).append(at.timestamp())
    for fault in faults:
        done = fault.at + fault.seconds
        api = [t for t in load.ok_at if t > done]
        fault.api_back_s = round(api[0] - fault.at, 2) if api else None
        firsts = {name: min((t for t in times if t > done), default=None) for name, times in stages.items()}
        if set(SUBSCRIBERS) <= set(firsts) and None not in firsts.values():
            fault.slowest_stage = max(firsts, key=lambda name: firsts[name] or 0.0)
            fault.pipeline_back_s = round((firsts[fault.slowest_stage] or 0.0) - fault.at, 2)


@dataclass
class Outcome:
    """The figures of a run, as the table and the JSON report show them."""

    count: int  # completions asked
    completed: int
    answered: dict[str, int]
    settled: bool
    faults: list[Fault]
    failed_faults: list[Fault]
    by_kind: Counter[str]
    exits: list[str]
    effects: dict[str, Effect]
    pushed: list[dict[str, Any]]
    resent: int
    lost: int
    duplicated: int
    unexpected: int
    dead: Counter[str]  # dead deliveries per subscriber
    dead_lines: list[str]  # the audit's description of each
    violations: dict[str, list[str]]
    ok: bool
    tasks_deleted: int = 0
    accounts_deleted: int = 0
    traces_left: dict[str, int] = field(default_factory=dict)  # rows about what was deleted
    delete_errors: list[str] = field(default_factory=list)


def judge(
    count: int,
    load: Load,
    faults: list[Fault],
    exits: list[str],
    settled: bool,
    fcm: Any,
    forgotten: Forgotten | None = None,
) -> Outcome:
    """Count everything and decide: a pass needs nothing lost, duplicated, unexpected or dead,
    and no trace of what was deleted."""
    forgotten = forgotten or Forgotten()
    from outbox import audit
    from outbox.models import Delivery
    from tasks_app.models import Task

    completed = Task.objects.filter(status="completed").count()
    result = audit.run()
    # "Stuck" is about settling, reported on its own line; the other checks are effects missing.
    violations = {k: v for k, v in result.violations.items() if "nothing is stuck" not in k}
    pushed = list(fcm.delivered)
    effects = count_effects(pushed, forgotten)
    traces = traces_left(forgotten)
    resent = resent_pushes(pushed)
    lost = sum(e.lost for e in effects.values())
    duplicated = sum(e.duplicated for e in effects.values())
    unexpected = sum(e.unexpected for e in effects.values())
    dead = Counter(Delivery.objects.filter(status="dead").values_list("subscriber", flat=True))
    measure_recovery(faults, load)
    failed_faults = [f for f in faults if f.error]
    by_kind = Counter(f.kind for f in faults)
    ok = (
        settled
        and completed == count - len(forgotten.tasks)
        and not any(traces.values())
        and not forgotten.errors
        and not lost
        and not duplicated
        and not unexpected
        and not dead
        and not violations
        and not failed_faults
    )
    return Outcome(
        count=count,
        completed=completed,
        answered=load.answered,
        settled=settled,
        faults=faults,
        failed_faults=failed_faults,
        by_kind=by_kind,
        exits=exits,
        effects=effects,
        pushed=pushed,
        resent=resent,
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        dead=dead,
        dead_lines=result.dead,
        violations=violations,
        ok=ok,
        tasks_deleted=len(forgotten.tasks),
        accounts_deleted=len(forgotten.accounts),
        traces_left=traces,
        delete_errors=forgotten.errors,
    )
