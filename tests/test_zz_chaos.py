"""The whole service under faults, in CI: completions through the API while a worker, the relay,
Redis and PostgreSQL are killed or restarted in turn; then the outbox settles and the audit passes.

Runs `python -m bench.chaos` (what `make chaos` runs for longer) against a database of
its own. Named to run last: restarting PostgreSQL drops every connection, this
session's included.
"""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


def chaos_database_url() -> str:
    url = os.environ["DATABASE_URL"]
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'selfos_chaos_ci'").fetchone():
            conn.execute('CREATE DATABASE "selfos_chaos_ci"')
    return urlunsplit(parts._replace(path="/selfos_chaos_ci"))


def test_nothing_lost_or_duplicated_under_faults() -> None:
    env = {**os.environ, "DATABASE_URL": chaos_database_url()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            "--seconds",
            "25",
            "--rate",
            "3",
            "--every",
            "4",
            "--seed",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    report = result.stdout
    assert result.returncode == 0, report + result.stderr[-3000:]
    faults = ["kill subscribers", "restart redis", "kill relay"]
    if "host=/" in os.environ["DATABASE_URL"]:  # the embedded PostgreSQL, which chaos may restart
        faults.append("restart postgresql")
    for fault in faults:
        assert f"chaos: {fault}" in report, report
    assert "lost (audit violations)                       0" in report
    assert "duplicated (deliveries that succeeded twice)  0" in report
    assert "tasks completed                               75" in report
