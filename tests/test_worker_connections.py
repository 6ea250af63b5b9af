"""A worker process keeps its database connection from one task to the next, as a web process
does from one request to the next (CONN_MAX_AGE), and replaces one that died meanwhile.

Celery's Django fixup closes every connection around every task; selfos/celery.py turns that
into Django's own rule. A connection per task cost PostgreSQL a backend process and its
set-up for every message: five per completion.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
from django.db import connection

from outbox import relay
from selfos.celery import _close_old_connections
from tasks_app import services

from .conftest import WorkerProcess, settle
from .factories import TaskFactory, UserFactory
from .testapp.models import Effect

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

APP_NAME = "selfos-connection-test"  # the worker's connections carry it (libpq's PGAPPNAME)


def worker_backends() -> list[int]:
    """The server processes serving the worker's connections now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid", [APP_NAME]
        )
        return [pid for (pid,) in cursor.fetchall()]


def complete_one(done_before: int) -> None:
    """One completion, relayed here, and its one message run by the worker."""
    user = UserFactory()
    services.complete_task(TaskFactory(owner=user), by=user)
    relay.relay_once()
    settle(lambda: Effect.objects.count() == done_before + 1, sweep=False)


@pytest.fixture
def worker(
    worker_process: Callable[..., WorkerProcess], use_subscribers: Callable[..., None]
) -> WorkerProcess:
    use_subscribers("recorder")
    # CONN_MAX_AGE as the base settings give a worker (the test settings' 0 closes them all).
    started = worker_process("test_recorder", SELFOS_TEST_CONN_MAX_AGE="60", PGAPPNAME=APP_NAME)
    complete_one(0)  # the worker's first task opens its connection
    return started


def test_a_worker_process_keeps_its_database_connection_from_task_to_task(worker: WorkerProcess) -> None:
    [backend] = worker_backends()  # open between tasks: with the fixup's rule, none would be
    for done in range(1, 6):
        complete_one(done)
        assert worker_backends() == [backend], worker.output()[-2000:]


def test_a_kept_connection_that_died_between_tasks_is_replaced_before_the_next_task_uses_it(
    worker: WorkerProcess,
) -> None:
    [backend] = worker_backends()
    with connection.cursor() as cursor:  # as a database restart or an idle timeout would
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
    settle(lambda: backend not in worker_backends(), sweep=False)

    complete_one(1)

    # CONN_HEALTH_CHECKS found it dead and opened another: the task never ran on the dead one
    # (that would be a failed message, sent again by outbox.message).
    assert len(worker_backends()) == 1 and worker_backends() != [backend]
    assert "could not be recorded" not in worker.output(), worker.output()[-2000:]


def test_after_a_task_that_did_not_succeed_its_connections_are_closed_whatever_their_age() -> None:
    # It may have been cut off mid-query (a time limit's signal), leaving the connection
    # unusable in a way Django cannot see.
    connection.ensure_connection()
    connection.close_at = None  # kept for ever, as CONN_MAX_AGE=None would
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    _close_old_connections(sender=task, state="SUCCESS")
    assert connection.connection is not None
    _close_old_connections(sender=task, state="FAILURE")
    assert connection.connection is None
