"""`python -m bench.chaos`: the command line, and one run from setting up to the verdict."""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __doc__ as description
from .deletes import Deleter, create_doomed_accounts
from .effects import judge
from .faults import FAULT_KINDS, POSTGRES_FAULTS, Chaos
from .postgres import NotRestartable, Postgres
from .report import print_report, write_json
from .service import Redis, Service, free_port
from .traffic import Load, answers, api_client, create_tasks, send_completions

SETTLE_SECONDS = 240


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=(description or "").split("\n\n")[0]
    )
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
    parser.add_argument(
        "--deletes-every",
        type=float,
        default=4,
        help="seconds between deletes mid-load, in turn a completed task and a whole account "
        "(default 4; 0: none)",
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

    from ..db import truncate

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
    count = int(args.seconds * args.rate)
    token, tasks = create_tasks(count)
    accounts = max(1, int(args.seconds / args.deletes_every / 2)) if args.deletes_every > 0 else 0
    doomed = create_doomed_accounts(accounts)
    client = api_client(web_port, token)
    wait_for(lambda: answers(client), 60, "the web process")

    exits: list[str] = []

    def supervise() -> None:
        for name in service.supervise():
            exits.append(name)
            print(f"chaos: {name} exited on its own; restarted", flush=True)

    chaos = Chaos(args.faults, args.every, rng, service, redis, postgres, supervise)
    faults = chaos.faults  # appended to by the chaos thread
    load_done = threading.Event()
    thread = threading.Thread(target=chaos.run, args=(load_done,), daemon=True)
    thread.start()
    load = Load()
    deleter = Deleter(web_port, client, load, doomed, args.deletes_every)
    deletes = threading.Thread(target=deleter.run, args=(load_done,), daemon=True)
    if doomed:
        deletes.start()
    started = time.monotonic()
    send_completions(client, tasks, args.rate, load)
    load_done.set()
    print(f"chaos: load done in {time.monotonic() - started:.0f}s; {len(faults)} faults so far", flush=True)
    thread.join()
    if doomed:
        deletes.join()
    forgotten = deleter.forgotten
    print(
        f"chaos: deleted {len(forgotten.tasks)} tasks and {len(forgotten.accounts)} accounts mid-load",
        flush=True,
    )
    print(f"chaos: {len(faults)} faults injected; settling ...", flush=True)

    def settled() -> bool:
        supervise()  # a worker that died during the drain would hold it up for good
        return settled_outbox()

    done = wait_for(settled, SETTLE_SECONDS, "the outbox to settle", fatal=False)
    outcome = judge(len(tasks), load, faults, exits, done, fcm, forgotten)
    print_report(outcome)
    if args.report_json:
        write_json(outcome, args.report_json)
    return 0 if outcome.ok else 1


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
