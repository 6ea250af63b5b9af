"""What runs on which host, started with `ip netns exec`, and a process manager over it.

The layout (the Procfile's processes, spread over hosts):

    web1, web2      gunicorn selfos.wsgi on the host's address, 2 sync workers
    relay1          celery worker -Q outbox -c 1
    relay2          celery worker -Q outbox -c 1, and beat (relay every 1 s, sweeper)
    work1..work3    celery worker -Q progress,story,notifications,memory -c 2

Every worker host serves every subscriber queue, so losing one host slows each queue
rather than stopping one. Beat is on relay2, not relay1, because relay1 is the host the run
kills: a beat there would take the scheduled relay and the sweeper down with it, and the
broker fault relies on them. (Beat is a single scheduler in any layout; run it once.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import net

ROOT = Path(__file__).resolve().parents[2]
WEB_PORT = 8000
SUBSCRIBER_QUEUES = "progress,story,notifications,memory"


def commands(host: str, logs: Path) -> dict[str, list[str]]:
    """The processes of `host`, by name: the command lines a process manager there would run."""
    python = sys.executable
    # The workers run through bench.chaos.celery_main, which points firebase-admin at the
    # run's loopback FCM (it takes its send URL from a class attribute, not from settings).
    worker = [python, "-c", "from bench.chaos import celery_main; celery_main()", "-A", "selfos", "worker"]
    worker += ["--without-mingle", "--without-gossip", "-l", "WARNING"]
    name = net.HOSTS[host].ns
    if host.startswith("web"):
        address = net.HOSTS[host].address
        gunicorn = [python, "-m", "gunicorn", "selfos.wsgi", "-b", f"{address}:{WEB_PORT}", "-w", "2"]
        # Its control socket's default path (~/.gunicorn) is one for every host on this machine.
        return {"web": [*gunicorn, "--no-control-socket"]}
    if host.startswith("relay"):
        found = {"relay": [*worker, "-n", f"relay@{name}", "-Q", "outbox", "-c", "1"]}
        if host == "relay2":
            schedule = str(logs / "celerybeat-schedule")
            found["beat"] = [python, "-m", "celery", "-A", "selfos", "beat", "-l", "WARNING", "-s", schedule]
        return found
    if host.startswith("work"):
        return {"subscribers": [*worker, "-n", f"subscribers@{name}", "-Q", SUBSCRIBER_QUEUES, "-c", "2"]}
    return {}


SERVICE_HOSTS = ("web1", "web2", "relay1", "relay2", "work1", "work2", "work3")
WORKER_NAMES = [f"relay@{net.PREFIX}relay{i}" for i in (1, 2)] + [
    f"subscribers@{net.PREFIX}work{i}" for i in (1, 2, 3)
]


class ProcessManager:
    """Starts each host's processes, restarts any that exit on their own (as systemd would),
    and leaves alone a host the run took down on purpose until it is started again."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.down: set[str] = set()
        self.restarts: list[str] = []  # processes that exited on their own, restarted
        self.lock = threading.Lock()  # the fault threads start and kill hosts; supervise() restarts

    def start_process(self, host: str, name: str) -> None:
        command = commands(host, self.logs)[name]
        with (self.logs / f"{host}-{name}.log").open("ab") as log:  # the child keeps its own copy
            self.procs[(host, name)] = subprocess.Popen(
                [*net.netexec(net.HOSTS[host], self.env), *command],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_host(self, host: str) -> None:
        with self.lock:
            for name in commands(host, self.logs):
                self.start_process(host, name)
            self.down.discard(host)

    def start_all(self) -> None:
        for host in SERVICE_HOSTS:
            for name in commands(host, self.logs):
                (self.logs / f"{host}-{name}.log").write_bytes(b"")  # this run's log only
            self.start_host(host)

    def kill_host(self, host: str) -> int:
        """kill -9 every process in the host's namespace (`ip netns pids`); returns how many."""
        with self.lock:
            self.down.add(host)
        killed = net.kill_all(net.HOSTS[host].ns)
        for (where, _), proc in self.procs.items():
            if where == host:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        return killed

    def supervise(self) -> list[str]:
        """Restart what exited on its own: a prefork worker whose pool dies while it starts gives
        up, and left dead it would stall the run rather than test it."""
        exited = []
        with self.lock:
            for (host, name), proc in list(self.procs.items()):
                if host not in self.down and proc.poll() is not None:
                    exited.append(f"{host} {name} (exit status {proc.returncode})")
                    self.start_process(host, name)
        self.restarts += exited
        return exited

    def stop(self) -> None:
        """SIGTERM (Celery's warm shutdown), a few seconds' grace, then SIGKILL whatever is left
        in the namespaces: the run is over and its data is thrown away."""
        with self.lock:
            self.down.update(SERVICE_HOSTS)
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for host in SERVICE_HOSTS:
            net.kill_all(net.HOSTS[host].ns)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
