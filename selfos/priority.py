"""A worker's CPU priority: the express lane and the relay ahead of a burst's batches.

During one user's burst every core is busy with the burst's batches, and the processes that
serve everyone else (the relay, which dispatches their events, and the express worker, which
runs them: outbox/express.py) get only their share of the CPU like any other: another user's
completion then waits a second and more for a core, however little work it is. Given a
higher priority, those two run as soon as they have work, which is rarely (a few milliseconds
a completion), and the burst's batches take what is left. Measured on the fairness suite's
2,000-completion burst, one run each: another user's p99 0.80 s at the same priority, 0.45 s
with the express worker at -5, 0.32 s with the relay too; scripts/with_services.py puts the
embedded database ahead as well (README, Fair share and Benchmarks).

WORKER_NICE (an integer, -20 to 19; unset or empty: unchanged) is set as the nice value of a
worker's processes at its start (Celery's prefork pool inherits it). Lower runs sooner; below
the current value needs CAP_SYS_NICE (root, or a grant of it): without it the worker says so
in its log and runs at the priority it has. Where the kernel groups scheduling by session
(autogroup: /proc/sys/kernel/sched_autogroup_enabled), a nice value only ranks a process
among its own session's processes, so when the worker's session holds nothing else (honcho
and the bench start each worker in a session of its own) the session's nice is set too. In
containers and under systemd the cgroup's weight is what counts (compose's `cpu_shares`,
systemd's `CPUWeight`): docker-compose.yml gives the relay and the express worker theirs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)


def nice_from_env(variable: str = "WORKER_NICE", environ: Mapping[str, str] = os.environ) -> int | None:
    """The nice value `variable` names, or None when unset or empty. A value that is not an
    integer in -20..19 raises ValueError, so a typo stops the process instead of running it at
    the wrong priority."""
    raw = environ.get(variable, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not -20 <= value <= 19:
        raise ValueError(f"{variable} must be an integer from -20 to 19, not {raw!r}")
    return value


def apply(nice: int) -> bool:
    """Set this process's nice value (and its session's, when the session is its own) to `nice`.
    Returns whether it was set; a lack of permission is logged, not raised."""
    return set_nice(os.getpid(), nice, session=_session_is_own())


def set_nice(pid: int, nice: int, *, session: bool) -> bool:
    """Set process `pid`'s nice value to `nice` and, with `session` (its session holds nothing of
    anyone else's), its session's autogroup nice. Returns whether it was set; a lack of
    permission is logged, not raised."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        group = Path(f"/proc/{pid}/autogroup")
        if session and group.exists():
            group.write_text(f"{nice}\n")
    except PermissionError:
        logger.warning(
            "nice %d for process %d: not permitted (a lower nice value needs CAP_SYS_NICE); it runs at %d",
            nice,
            pid,
            os.getpriority(os.PRIO_PROCESS, pid),
        )
        return False
    logger.info("process %d runs at nice %d", pid, nice)
    return True


def _session_is_own() -> bool:
    """Whether everything in this process's session is this process or its ancestors: the
    bench's worker, which leads a session of its own, or honcho's, whose `sh -c` leads it. Then
    the session's autogroup holds this worker and nothing of anyone else's (its pool, forked
    later, joins it). A session with anything else in it (a terminal's other jobs, a test run)
    is left alone."""
    session = os.getsid(0)
    ancestors = set()
    pid = os.getpid()
    while True:
        ancestors.add(pid)
        if pid == session:
            break
        pid = _parent_of(pid)
        if pid <= 1 or os.getsid(pid) != session:
            return False  # the session's leader is not one of ours
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in ancestors:
            try:
                if os.getsid(int(entry.name)) == session:
                    return False
            except OSError:  # gone meanwhile
                continue
    return True


def _parent_of(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0
