"""The fault kinds, the order they come in, and their injection from a thread of their own."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .postgres import Postgres
from .service import Redis, Service

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


class Chaos:
    """Injects `kinds` while the load runs: every `every` seconds in order, or every 3-7 s at random.

    `supervise` is called between faults, so a process that exited on its own is
    restarted (and recorded by the caller) rather than left to stall the run.
    """

    def __init__(
        self,
        kinds: list[str],
        every: float | None,
        rng: random.Random,
        service: Service,
        redis: Redis,
        postgres: Postgres | None,
        supervise: Callable[[], None],
    ) -> None:
        self.kinds = kinds
        self.every = every
        self.rng = rng
        self.service = service
        self.redis = redis
        self.postgres = postgres
        self.supervise = supervise
        self.faults: list[Fault] = []
        self.deck: list[str] = []

    def inject(self, kind: str) -> Fault:
        fault = Fault(kind, time.time())
        print(f"chaos: {kind}", flush=True)
        started = time.monotonic()
        try:
            if kind == "kill pool":
                killed = self.service.kill_pool(("subscribers", "memory"), self.supervise)
                fault.detail = f"{killed} pool processes killed"
            elif kind.startswith("kill "):
                name = kind.split()[1]
                self.service.kill(name)
                time.sleep(1)
                self.service.start(name)
            elif kind == "restart redis":
                self.redis.restart()
            elif kind == RESTART_POSTGRESQL:
                assert self.postgres
                self.postgres.restart()
                fault.database_back_s = time.monotonic() - started
            else:
                assert self.postgres and kind == CRASH_BACKEND
                fault.detail = f"backend {self.postgres.crash_backend()} killed"
                self.postgres.wait_until_up()
                fault.database_back_s = time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 - a fault that could not be injected fails the run
            fault.error = f"{type(exc).__name__}: {exc}"
            print(f"chaos: {kind} FAILED: {fault.error}", flush=True)
        fault.seconds = time.monotonic() - started
        return fault

    def next_kind(self, turn: int) -> str:
        if self.every:
            return str(self.kinds[turn % len(self.kinds)])
        if not self.deck:  # rounds, not independent draws: a long enough run sees every kind
            self.deck.extend(self.rng.sample(self.kinds, len(self.kinds)))
        return self.deck.pop()

    def run(self, load_done: threading.Event) -> None:
        """The thread's body: inject until `load_done` is set (and, with `every`, the list is done)."""
        turn = 0
        while True:
            pause = self.every or self.rng.uniform(3, 7)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline:
                # With --every, the whole list is owed, even while the backlog drains.
                if load_done.is_set() and not (self.every and turn < len(self.kinds)):
                    return
                self.supervise()
                time.sleep(0.05)
            kind = self.next_kind(turn)
            turn += 1
            self.faults.append(self.inject(kind))
