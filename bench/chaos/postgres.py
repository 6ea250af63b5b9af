"""The PostgreSQL server in use, found from a connection, crash-restarted or one of its backends killed."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .service import LOGS, parent_of


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
                parent = parent_of(backend)
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
