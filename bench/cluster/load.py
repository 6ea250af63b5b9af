"""Steady load on both web hosts, and the CPU each host spends meanwhile.

The load is bench.chaos.traffic's (a phone's completions through the API, paced, each
refusal retried until taken), split over the two web hosts: one client and half the rate
each, so a fault on one web host shows in that host's figures only.

The CPU meter reads /proc once a second and sorts processes into hosts by their network
namespace: a host's figure includes everything it ran (gunicorn's workers, Celery's pool,
PostgreSQL's backends), even processes killed before the end (up to their last reading).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chaos.traffic import Load, api_client, send_completions
from . import net
from .hosts import WEB_PORT

TICKS = os.sysconf("SC_CLK_TCK")
WEB_HOSTS = ("web1", "web2")


@dataclass
class HostLoad:
    """One web host's share: its tasks, and what its client saw."""

    host: str
    tasks: list[Any]
    load: Load = field(default_factory=Load)
    started: float = 0.0
    finished: float = 0.0


def split(tasks: list[Any]) -> list[HostLoad]:
    return [HostLoad(host, tasks[i :: len(WEB_HOSTS)]) for i, host in enumerate(WEB_HOSTS)]


def run_load(shares: list[HostLoad], token: str, rate: float) -> threading.Thread:
    """Send every share's completions to its host at rate / hosts, from threads; the returned
    thread ends when all are done."""

    def one(share: HostLoad) -> None:
        with api_client(WEB_PORT, token, host=net.HOSTS[share.host].address) as client:
            share.started = time.time()
            share.load = send_completions(client, share.tasks, rate / len(shares))
            share.finished = time.time()

    threads = [threading.Thread(target=one, args=(s,), daemon=True) for s in shares]

    def all_of_them() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    runner = threading.Thread(target=all_of_them, daemon=True)
    runner.start()
    return runner


def merged(shares: list[HostLoad]) -> Load:
    """Both hosts' answers as one Load, for bench.chaos's judge and recovery figures."""
    total = Load()
    for share in shares:
        for key, value in share.load.answered.items():
            total.answered[key] = total.answered.get(key, 0) + value
        total.ok_at += share.load.ok_at
    total.ok_at.sort()
    return total


def _stat(pid: str) -> tuple[str, int, str] | None:
    """(command name, utime + stime in ticks, start time) of a process, from /proc."""
    try:
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        head, tail = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
    except (OSError, ValueError):
        return None
    fields = tail.split()
    return head.split("(", 1)[1], int(fields[11]) + int(fields[12]), fields[19]


class CpuMeter:
    """CPU seconds per host between `mark()` and `stop()`, sampled once a second."""

    def __init__(self) -> None:
        self.inodes = {net.netns_inode(host): name for name, host in net.HOSTS.items()}
        self.latest: dict[tuple[str, int, str], int] = {}
        self.baseline: dict[tuple[str, int, str], int] = {}
        self.names: dict[tuple[str, int, str], str] = {}
        # CPU seconds per host and command name (the db host: postgres and redis-server)
        self.by_command: dict[str, dict[str, float]] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                inode = os.stat(f"/proc/{entry.name}/ns/net").st_ino
                host = self.inodes.get(inode)
                if host is None:
                    continue
                found = _stat(entry.name)
                if found is not None:
                    name, ticks, started = found
                    self.latest[(host, int(entry.name), started)] = ticks
                    self.names[(host, int(entry.name), started)] = name

    def _loop(self) -> None:
        while not self.done.wait(1.0):
            self.sample()

    def mark(self) -> None:
        """Start counting from now (the processes' start-up is not part of the load)."""
        self.sample()
        self.baseline = dict(self.latest)
        self.thread.start()

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.thread.join()
        self.sample()
        seconds: dict[str, float] = dict.fromkeys(net.HOSTS, 0.0)
        for key, ticks in self.latest.items():
            spent = (ticks - self.baseline.get(key, 0)) / TICKS
            seconds[key[0]] += spent
            commands = self.by_command.setdefault(key[0], {})
            commands[self.names[key]] = round(commands.get(self.names[key], 0.0) + spent, 1)
        return seconds
