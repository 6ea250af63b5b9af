"""The whole service under faults, in CI: completions through the API while PostgreSQL is
crash-restarted (twice) and a backend SIGKILLed, workers, their pool processes and the relay
are `kill -9`'d and Redis is replaced by an empty one, and while completed tasks and whole
accounts are deleted; then the outbox settles and every effect is counted: nothing lost,
nothing duplicated, no dead delivery, no trace of what was deleted, and `outbox audit` exits 0.

Runs `python -m bench.chaos` (what `make chaos` runs for longer, with random faults) against a
database of its own, on whatever PostgreSQL the suite uses: one this machine cannot
crash-restart fails the test. Marked `chaos`: the conftest runs it after every other test,
because restarting PostgreSQL drops every connection, this session's included.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

# Every kind once, PostgreSQL crash-restarted at the start and again mid-way.
FAULTS = [
    "restart postgresql",
    "kill subscribers",
    "restart redis",
    "kill pool",
    "crash backend",
    "restart postgresql",
    "kill relay",
    "kill memory",
]
SECONDS, RATE = 25, 3


def chaos_database_url() -> str:
    url = os.environ["DATABASE_URL"]
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'selfos_chaos_ci'").fetchone():
            conn.execute('CREATE DATABASE "selfos_chaos_ci"')
    return urlunsplit(parts._replace(path="/selfos_chaos_ci"))


def test_nothing_lost_duplicated_or_dead_under_faults(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": chaos_database_url()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    figures = tmp_path / "chaos.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            *("--seconds", str(SECONDS), "--rate", str(RATE), "--every", "3", "--seed", "1"),
            *("--faults", ",".join(FAULTS), "--report-json", str(figures)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    output = result.stdout + result.stderr[-3000:]
    assert figures.exists(), output
    report = json.loads(figures.read_text())
    injected = [f["kind"] for f in report["faults"]]
    assert injected[: len(FAULTS)] == FAULTS, output
    assert [f for f in report["faults"] if f["error"]] == [], output
    assert report["settled"], output
    assert report["tasks_completed"] == SECONDS * RATE - report["tasks_deleted"], output
    assert report["dead"] == 0, output
    for name, effect in report["effects"].items():
        assert (name, effect["lost"], effect["duplicated"], effect["unexpected"]) == (name, 0, 0, 0), output
        assert effect["expected"] > 0, output  # each effect was looked for, not vacuously absent
    assert report["audit_violations"] == {}, output
    assert report["tasks_deleted"] >= 2 and report["accounts_deleted"] >= 2, output
    assert report["delete_errors"] == [], output
    assert set(report["traces_left"].values()) == {0} and len(report["traces_left"]) == 5, output
    assert result.returncode == 0, output
    # What an operator runs afterwards: the audit itself, dead deliveries not allowed.
    audit = subprocess.run(
        [sys.executable, "manage.py", "outbox", "audit"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "selfos.settings.local"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr[-3000:]
    assert "audit passed" in audit.stdout and "dead deliveries: 0" in audit.stdout, audit.stdout
