"""`python -m bench.cluster`: build the hosts, run the service on them under load and faults,
judge, report, and always take everything down again."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..chaos.__main__ import settled_outbox, wait_for
from ..chaos.effects import judge
from ..chaos.report import outcome_json, print_report
from ..chaos.traffic import answers, api_client, create_tasks
from . import __doc__ as description
from . import net
from .faults import Injector, Plan, wait_for_worker
from .figures import fault_figures, host_figures
from .hosts import ROOT, WEB_PORT, WORKER_NAMES, ProcessManager
from .load import CpuMeter, merged, run_load, split
from .report import print_cluster
from .servers import Postgres, RedisServers

LOGS = ROOT / "bench" / "results" / "tmp" / "cluster"
WORKDIRS = "selfos-cluster-"
SETTLE_SECONDS = 180
EXIT_NO_NAMESPACES = 3


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster", description=(description or "").split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=120, help="length of the load (default 120)")
    parser.add_argument("--rate", type=float, default=10, help="completions per second, both web hosts (10)")
    parser.add_argument("--report-json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


def bridge_fcm(workdir: Path) -> Any:
    """tests.fakes' loopback FCM, listening on the bridge's address so every host reaches it."""
    from tests.fakes import FakeFCM, _Server

    class OnBridge(_Server):
        def __init__(self, handler: Any) -> None:
            self.httpd = ThreadingHTTPServer((net.GATEWAY, 0), handler)
            self.httpd.fake = self  # type: ignore[attr-defined]
            self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
            self.thread.start()

        @property
        def url(self) -> str:
            return f"http://{net.GATEWAY}:{self.httpd.server_address[1]}"

    class BridgeFCM(FakeFCM, OnBridge):
        pass

    return BridgeFCM(workdir)


def cluster_env(postgres: Postgres, redis: RedisServers, fcm: Any) -> dict[str, str]:
    """What every process of the cluster runs with (the bench's settings: DEBUG off, no throttle
    for the one load user), set with `env` on its command line so each log shows it."""
    return {
        "DJANGO_SETTINGS_MODULE": "selfos.settings.local",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": postgres.url(),
        "REDIS_URL": redis.broker_url,
        "CELERY_BROKER_URL": redis.broker_url,
        "CACHE_URL": redis.cache_url,
        "PUSH_BACKEND": "fcm",
        "FCM_CREDENTIALS_FILE": str(fcm.credentials_file),
        "CHAOS_FCM_URL": fcm.send_url_template,
        # As `make chaos`: a delivery held by a lost worker is re-published after 5 s.
        "OUTBOX_LEASE_SECONDS": "5",
        "OUTBOX_SWEEP_INTERVAL": "1",
        "CELERY_VISIBILITY_TIMEOUT": "30",
        "DJANGO_LOG_LEVEL": "WARNING",
        "SELFOS_USER_THROTTLE": "100000000/minute",
        "HF_HUB_OFFLINE": "1",
    }


def remove_old_workdirs() -> None:
    """Work dirs of aborted runs (their processes were killed with their namespaces)."""
    for old in Path(tempfile.gettempdir()).glob(f"{WORKDIRS}*"):
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        net.require_namespaces()
    except net.NamespacesUnavailable as exc:
        print(f"cluster: cannot build the cluster's hosts: {exc}", file=sys.stderr)
        return EXIT_NO_NAMESPACES
    net.teardown()  # what an aborted run left
    remove_old_workdirs()
    LOGS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIRS))
    postgres = Postgres(workdir)
    redis = RedisServers(workdir)
    manager: ProcessManager | None = None

    def take_down() -> None:
        if manager:
            manager.stop()
        redis.stop()
        postgres.stop()
        net.teardown()
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(take_down)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    fcm = None
    try:
        started = time.monotonic()
        net.build()
        fcm = bridge_fcm(workdir)
        postgres.start()
        redis.start()
        env = cluster_env(postgres, redis, fcm)
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        token, tasks = create_tasks(int(args.seconds * args.rate))
        manager = ProcessManager(env, LOGS)
        manager.start_all()
        for host in ("web1", "web2"):
            with api_client(WEB_PORT, token, host=net.HOSTS[host].address) as client:
                wait_for(lambda c=client: answers(c), 90, f"gunicorn on {host}")
        for name in WORKER_NAMES:
            if wait_for_worker(name) is None:
                raise SystemExit(f"cluster: {name} did not answer a ping")
        print(f"cluster: 8 hosts up in {time.monotonic() - started:.0f}s; logs in {LOGS}", flush=True)
        return run(args, manager, tasks, token, fcm, env)
    finally:
        take_down()
        atexit.unregister(take_down)
        if fcm:
            fcm.close()


def run(
    args: argparse.Namespace,
    manager: ProcessManager,
    tasks: list[Any],
    token: str,
    fcm: Any,
    env: dict[str, str],
) -> int:
    plan = Plan.for_load(args.seconds)
    meter = CpuMeter()
    meter.mark()
    shares = split(tasks)
    injector = Injector(plan, manager, env["DATABASE_URL"])
    load = run_load(shares, token, args.rate)
    injector.start()
    while load.is_alive() or not injector.done():
        for name in manager.supervise():
            print(f"cluster: {name} exited on its own; restarted", flush=True)
        time.sleep(0.2)
    print(f"cluster: load done; {len(injector.faults)} faults injected and healed; settling ...", flush=True)

    def settled() -> bool:
        manager.supervise()
        return settled_outbox()

    done = wait_for(settled, SETTLE_SECONDS, "the outbox to settle", fatal=False)
    cpu = meter.stop()
    faults = sorted(injector.faults, key=lambda f: f.at)
    outcome = judge(len(tasks), merged(shares), faults, manager.restarts, done, fcm)  # type: ignore[arg-type]
    steady = fault_figures(faults, shares, LOGS)
    figures = host_figures(shares, cpu)
    figures["hosts"]["db"]["cpu_s_by_command"] = meter.by_command.get("db", {})
    audit = subprocess.run(
        [sys.executable, "manage.py", "outbox", "audit"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    healed = len(faults) == 3 and all(f.healed_at and not f.error for f in faults)
    ok = outcome.ok and audit.returncode == 0 and healed
    print_report(outcome)
    print_cluster(faults, steady, figures)
    last = (audit.stdout.strip().splitlines() or [""])[-1]
    print(f"manage.py outbox audit: exit status {audit.returncode}: {last} {audit.stderr.strip()[-300:]}")
    print(f"cluster verdict: {'PASS' if ok else 'FAIL'}")
    if args.report_json:
        report = outcome_json(outcome)
        report.update(
            {
                "audit_exit_status": audit.returncode,
                "audit_output": audit.stdout[-2000:],
                "faults_healed": healed,
                "steady": steady,
                "cluster": figures,
                "plan": vars(plan),
                "ok": ok,
            }
        )
        args.report_json.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
    sys.exit(130)
