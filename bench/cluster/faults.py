"""The three faults, each on a thread of its own at its own moment of the load, always healed.

- cut worker host: work1's cable is unplugged (`ip link set selfos-work1 down`, the root
  namespace's end of its veth) at a moment it has a transaction open in PostgreSQL, i.e. in
  the middle of its handlers, and plugged back in after 20 s. Its processes live on and
  find out only when their packets start flowing again.
- kill relay host: every process of relay1 (`ip netns pids`) gets SIGKILL, as a power cut
  would; after a pause the host's processes are started again, as systemd's Restart=always
  would. Meanwhile relay2 relays alone: claims are `SKIP LOCKED`, so two relays need no
  coordination, and one is enough. Restarting (rather than leaving relay1 dead) also shows a
  relay host rejoining mid-load.
- cut broker from web: a blackhole route in web1 to the broker's address (10.77.0.3) and to
  nothing else; web1 still reaches PostgreSQL and the cache, so its commits succeed, only its
  kicks fail, and the events it writes wait for a relay run that beat (or web2's kicks) start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..chaos.faults import Fault
from . import net
from .hosts import ProcessManager

CUT_WORKER = "cut worker host"
KILL_RELAY = "kill relay host"
CUT_BROKER = "cut broker from web"
KINDS = (CUT_WORKER, KILL_RELAY, CUT_BROKER)


@dataclass
class ClusterFault(Fault):
    """bench.chaos's fault (kind, start, how long it lasted: `seconds`), with where and the heal."""

    host: str = ""
    healed_at: float | None = None  # time.time() when the host was whole again
    figures: dict[str, Any] = field(default_factory=dict)  # filled in after the run (figures.py)


@dataclass
class Plan:
    """When each fault starts (seconds into the load) and how long it lasts."""

    cut_worker_at: float
    kill_relay_at: float
    cut_broker_at: float
    cut_worker_seconds: float = 20.0
    relay_down_seconds: float = 10.0
    cut_broker_seconds: float = 15.0
    worker_host: str = "work1"
    relay_host: str = "relay1"
    web_host: str = "web1"

    @classmethod
    def for_load(cls, seconds: float) -> Plan:
        """One after the other when the load is long enough, else overlapping (the CI run)."""
        if seconds >= 100:
            return cls(0.08 * seconds, 0.375 * seconds, 0.625 * seconds)
        return cls(4, 8, 12, relay_down_seconds=8, cut_broker_seconds=12)

    @property
    def last_heal(self) -> float:
        return max(
            self.cut_worker_at + self.cut_worker_seconds,
            self.kill_relay_at + self.relay_down_seconds,
            self.cut_broker_at + self.cut_broker_seconds,
        )


def open_transactions(database_url: str, address: str) -> int:
    """Transactions the host at `address` has open in PostgreSQL right now."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE client_addr = %s::inet AND xact_start IS NOT NULL",
            [address],
        ).fetchone()
    return int(row[0]) if row else 0


def wait_for_handlers(database_url: str, address: str, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = open_transactions(database_url, address)
        if found:
            return found
        time.sleep(0.02)
    return 0


def wait_for_worker(name: str, timeout: float = 90) -> float | None:
    """Seconds until the Celery worker `name` answers a ping (None: it did not)."""
    from selfos.celery import app

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if any(name in reply for reply in app.control.ping(destination=[name], timeout=0.5) or []):
            return round(time.monotonic() - started, 2)
    return None


class Injector:
    """Runs the plan's faults from threads; `faults` holds them as they begin."""

    def __init__(self, plan: Plan, manager: ProcessManager, database_url: str) -> None:
        self.plan = plan
        self.manager = manager
        self.database_url = database_url
        self.faults: list[ClusterFault] = []
        self.threads: list[threading.Thread] = []

    def _run(self, kind: str, host: str, at: float, body: Callable[[ClusterFault], None]) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        fault = ClusterFault(kind, time.time(), host=host)
        self.faults.append(fault)
        print(f"cluster: {kind} ({host})", flush=True)
        try:
            body(fault)
        except Exception as exc:  # noqa: BLE001 - a fault not injected or not healed fails the run
            fault.error = f"{type(exc).__name__}: {exc}"
            print(f"cluster: {kind} FAILED: {fault.error}", flush=True)
        fault.seconds = round((fault.healed_at or time.time()) - fault.at, 2)
        print(f"cluster: {kind} ({host}) healed after {fault.seconds:.1f}s", flush=True)

    def cut_worker(self, fault: ClusterFault) -> None:
        host = net.HOSTS[self.plan.worker_host]
        open_now = wait_for_handlers(self.database_url, host.address)
        fault.at = time.time()
        net.set_link(host, up=False)
        try:
            fault.detail = f"cut with {open_now} transactions of {host.name} open (in its handlers)"
            if not open_now:
                fault.detail = f"cut with no transaction of {host.name} seen open in 15 s"
            time.sleep(self.plan.cut_worker_seconds)
        finally:
            net.set_link(host, up=True)
            fault.healed_at = time.time()

    def kill_relay(self, fault: ClusterFault) -> None:
        host = self.plan.relay_host
        killed = self.manager.kill_host(host)
        if not killed:
            raise RuntimeError(f"no process to kill on {host}")
        time.sleep(self.plan.relay_down_seconds)
        self.manager.start_host(host)
        fault.healed_at = time.time()
        ready = wait_for_worker(f"relay@{net.HOSTS[host].ns}")
        fault.figures["relay_ready_after_restart_s"] = ready
        fault.detail = (
            f"{killed} processes kill -9'd (ip netns pids), restarted after "
            f"{self.plan.relay_down_seconds:.0f}s, ready {ready}s later"
        )

    def cut_broker(self, fault: ClusterFault) -> None:
        host = net.HOSTS[self.plan.web_host]
        net.set_blackhole(host, net.BROKER_ADDRESS, on=True)
        try:
            fault.detail = f"blackhole route to {net.BROKER_ADDRESS}/32 in {host.name}"
            time.sleep(self.plan.cut_broker_seconds)
        finally:
            net.set_blackhole(host, net.BROKER_ADDRESS, on=False)
            fault.healed_at = time.time()

    def start(self) -> None:
        """Start the faults' threads, timed from now."""
        now = time.monotonic()
        plan = self.plan
        for kind, host, at, body in (
            (CUT_WORKER, plan.worker_host, plan.cut_worker_at, self.cut_worker),
            (KILL_RELAY, plan.relay_host, plan.kill_relay_at, self.kill_relay),
            (CUT_BROKER, plan.web_host, plan.cut_broker_at, self.cut_broker),
        ):
            thread = threading.Thread(target=self._run, args=(kind, host, now + at, body), daemon=True)
            thread.start()
            self.threads.append(thread)

    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self.threads)
