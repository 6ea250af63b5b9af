"""Real Celery worker and beat processes for the benchmarks, on the bench database and Redis db."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "results" / "tmp"
# The Procfile's `worker` line: progress, story and notifications in one worker (pool, concurrency).
SUBSCRIBERS_POOL = ("prefork", 2)


def bench_env(**extra: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    url = os.environ["DATABASE_URL"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "selfos.settings.local",
        "DATABASE_URL": url,
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "PUSH_BACKEND": "locmem",
        "DJANGO_LOG_LEVEL": "WARNING",
        # As in production: with DEBUG on, Django keeps every query of a process in
        # memory (up to 9,000), which costs CPU and shows up as RSS growth.
        "DJANGO_DEBUG": "false",
        "SELFOS_DB_NAME": db["NAME"],
        # The bench's clients are one user sending thousands of requests a minute: the per-user
        # throttle (600/minute) would answer most of them 429.
        "SELFOS_USER_THROTTLE": "100000000/minute",
        **extra,
    }


def process_tree(pid: int) -> list[Any]:
    """A process and all its descendants (a Celery worker and its pool)."""
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process tree has used so far (gunicorn and its workers)."""
    return summed(process_tree(pid), lambda p: sum(p.cpu_times()[:2]))


def summed(procs: list[Any], read: Callable[[Any], float]) -> float:
    """The sum of `read(process)`, skipping processes that exit while being read."""
    import psutil

    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += read(proc)
    return total


class Processes:
    """Start processes; stop them all (their whole process groups) on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        LOGS.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        with (LOGS / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "selfos", *args],
                cwd=ROOT,
                env=bench_env(**env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def worker(
        self, name: str, queues: str, concurrency: int = 1, pool: str = "prefork", **env: str
    ) -> subprocess.Popen[bytes]:
        return self.start(
            name,
            "worker",
            "-n",
            f"{name}@bench",
            "-Q",
            queues,
            "-P",
            pool,
            "-c",
            str(concurrency),
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
            **env,
        )

    def service(
        self, subscribers: tuple[str, int] = SUBSCRIBERS_POOL, **env: str
    ) -> dict[str, subprocess.Popen[bytes]]:
        """The Procfile's worker layout (relay; progress, story and notifications; memory; express) and
        beat, ready to work; returns the workers by name. `subscribers` is the (pool,
        concurrency) of the progress, story and notifications worker."""
        pool, concurrency = subscribers
        # The Procfile's priorities: the relay and the express worker ahead (selfos/priority.py).
        ahead = {"WORKER_NICE": "-5", **env}
        workers = {
            "relay": self.worker("relay", "outbox", **ahead),
            "subscribers": self.worker(
                "subscribers", "progress,story,notifications", concurrency=concurrency, pool=pool, **env
            ),
            "memory": self.worker("memory", "memory", **env),
            "express": self.worker(
                "express",
                "progress.express,story.express,notifications.express,memory.express",
                concurrency=2,
                **ahead,
            ),
        }
        self.start("beat", "beat", "--schedule", str(LOGS / "celerybeat-schedule"), "-l", "WARNING", **env)
        self.wait_ready(*workers)
        return workers

    def wait_ready(self, *names: str, timeout: float = 60) -> None:
        from selfos.celery import app

        deadline = time.monotonic() + timeout
        wanted = {f"{n}@bench" for n in names}
        while True:
            replies = app.control.ping(timeout=0.5) or []
            if wanted <= {host for reply in replies for host in reply}:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready: {wanted}")

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
