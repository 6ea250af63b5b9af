"""A real PgBouncer (Debian's package) in transaction pooling mode, in front of the tests'
PostgreSQL, started by a test on a free port with a configuration of its own."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from .brokers import IN_CI

# Few server connections for the clients to share, so that one client's transactions
# really do run on different server connections, and several clients on the same one.
POOL_SIZE = 2
# A second client user, logged in as the server's own user: pgbouncer's log then tells a
# worker process that uses it from this process's connections.
WORKER_USER = "selfos_worker"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if not found:
        message = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if IN_CI:
            pytest.fail(message + "; CI (.ci/run) installs it")
        pytest.skip(message)
    return found


class PgBouncer:
    """pgbouncer on 127.0.0.1:<free port>, pooling transactions to the test database's server."""

    def __init__(self) -> None:
        database = settings.DATABASES["default"]
        self.server_host = database["HOST"] or database["OPTIONS"].get("host") or "127.0.0.1"
        self.server_port = int(database["PORT"] or 5432)
        self.user = database["USER"] or "postgres"
        self.database = database["NAME"]
        self.port = _free_port()
        # Readable by the unprivileged user pgbouncer runs as (it refuses to run as root).
        self.folder = Path(tempfile.mkdtemp(prefix="selfos-pgbouncer-"))
        self.folder.chmod(0o755)
        users = self.folder / "users.txt"
        users.write_text(f'"{self.user}" "{database["PASSWORD"] or ""}"\n"{WORKER_USER}" ""\n')
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={self.server_host} port={self.server_port} user={self.user}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {users}",
                    f"admin_users = {self.user}",
                    "pool_mode = transaction",
                    f"default_pool_size = {POOL_SIZE}",
                    "max_client_conn = 200",
                    "ignore_startup_parameters = extra_float_digits",
                    "",
                ]
            )
        )
        for path in (users, config):
            path.chmod(0o644)
        command = [find_pgbouncer(), str(config)]
        if os.geteuid() == 0:
            command[1:1] = ["-u", self._unprivileged_user()]
        self.log = self.folder / "pgbouncer.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_it_answers()

    def _unprivileged_user(self) -> str:
        """Who may reach the server: the owner of a Unix socket's directory, else nobody."""
        if self.server_host.startswith("/"):
            return pwd.getpwuid(Path(self.server_host).stat().st_uid).pw_name
        return "nobody"

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.show("VERSION")
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start:\n{self.log.read_text()}") from None
                time.sleep(0.05)

    def url(self, user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{self.database}"

    def logins_of(self, user: str) -> int:
        """Client logins pgbouncer logged for `user`."""
        return sum(
            f"/{user}@" in line and "login attempt" in line for line in self.log.read_text().splitlines()
        )

    def django_settings(self) -> dict[str, Any]:
        """What a Django connection's settings_dict changes to, to go through this pgbouncer."""
        return {"HOST": "127.0.0.1", "PORT": str(self.port), "OPTIONS": {"connect_timeout": 5}}

    def show(self, what: str) -> list[dict[str, Any]]:
        """A SHOW command on the admin console (simple query protocol only: a ClientCursor)."""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={self.user} connect_timeout=2",
            autocommit=True,
            cursor_factory=psycopg.ClientCursor,
        ) as admin:
            cursor = admin.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)
