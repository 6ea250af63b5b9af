"""The outbox through PgBouncer in transaction pooling mode, with DATABASE_POOLER=pgbouncer.

A real pgbouncer (tests/pgbouncer.py) with two server connections stands between the test
database and everything here: this process (the API, publish, the relay's SKIP LOCKED
claims in two threads at once, the sweeper, memory search with pgvector) and a real
`celery worker` process (the delivery wrapper's claims, savepoints and group commits, the
memory subscriber writing embeddings). Transaction pooling hands each transaction whichever
server connection is free, so anything that leaned on session state would break here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.db import connections
from redis import Redis

from outbox import audit, relay, sweeper
from outbox.eventlog import export
from outbox.models import Delivery, OutboxEvent
from selfos.settings.database import behind_transaction_pooler
from tasks_app import services as task_services
from workers.memory.models import MemoryEntry

from .conftest import client_for, settle
from .factories import TaskFactory, UserFactory
from .pgbouncer import WORKER_USER, PgBouncer
from .testapp.models import Effect

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pgbouncer(transactional_db: None) -> Iterator[PgBouncer]:
    bouncer = PgBouncer()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def through_pgbouncer(pgbouncer: PgBouncer) -> Iterator[PgBouncer]:
    """This process's database connections (every thread's) go through pgbouncer, with the
    settings DATABASE_POOLER=pgbouncer gives them."""
    default = connections["default"]
    saved = dict(default.settings_dict)
    default.close()
    # In place: the dict is shared by the connections other threads open.
    default.settings_dict.update(behind_transaction_pooler({**saved, **pgbouncer.django_settings()}))
    try:
        yield pgbouncer
    finally:
        connections.close_all()
        default.settings_dict.clear()
        default.settings_dict.update(saved)


def relay_in_two_threads(batch_size: int) -> None:
    """Two relays at once, each on its own connection: SKIP LOCKED keeps their claims apart."""
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            while relay.relay_once(batch_size=batch_size):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def statuses() -> set[str]:
    return set(Delivery.objects.values_list("status", flat=True))


def test_the_outbox_flow_and_search_run_through_pgbouncer(
    through_pgbouncer: PgBouncer, worker_process, broker: Redis, use_subscribers, settings, monkeypatch
) -> None:
    bouncer = through_pgbouncer
    use_subscribers("recorder", "memory")
    settings.OUTBOX = {**settings.OUTBOX, "KICK": False}  # the relays below are the test's own
    # The worker process reaches the database only through pgbouncer, as production would.
    monkeypatch.setenv("DATABASE_URL", bouncer.url(user=WORKER_USER))
    monkeypatch.setenv("DATABASE_POOLER", "pgbouncer")
    broker.delete("test_recorder", "memory")

    owner = UserFactory()
    titles = ["Bake sourdough bread", "Renew passport", "Fix the bicycle brakes"]
    titles += [f"Water the plants, week {n}" for n in range(17)]
    for title in titles:
        task_services.complete_task(TaskFactory(owner=owner, title=title), by=owner)
    relay_in_two_threads(batch_size=3)
    assert not OutboxEvent.objects.filter(status="pending").exists()
    assert Delivery.objects.count() == 2 * len(titles)  # each event fanned out once

    broker.delete("test_recorder")  # recorder's messages lost: the sweeper must re-publish them
    worker_process("test_recorder", "memory")
    settle(
        lambda: not Delivery.objects.filter(subscriber="memory").exclude(status="succeeded").exists(),
        60,
        False,
    )
    assert set(Delivery.objects.filter(subscriber="recorder").values_list("status", flat=True)) == {
        "dispatched"
    }
    assert sweeper.sweep(lease_seconds=0) == {"retries": 0, "expired": len(titles)}
    settle(lambda: statuses() == {"succeeded"}, timeout=30, sweep=False)
    assert Effect.objects.filter(subscriber="recorder").count() == len(titles)  # once each

    assert bouncer.logins_of(WORKER_USER) > 0  # the worker's connections: through pgbouncer
    # Search: pgvector, with SET LOCAL scan settings inside the search's own transaction.
    assert MemoryEntry.objects.filter(owner_id=owner.pk).count() == len(titles)
    found = client_for(owner).get("/api/memory/search/", {"q": "baking", "k": 3}).json()["results"]
    assert found[0]["title"] == "Bake sourdough bread"
    # The audit walks every row with .iterator(): chunked on the client, no WITH HOLD cursor.
    report = audit.run()
    assert report.promises_kept, report.violations


def test_the_event_log_export_streams_through_pgbouncer(through_pgbouncer: PgBouncer) -> None:
    """Its named (server-side) cursor lives inside one transaction, which keeps its server
    connection to the end under transaction pooling."""
    owner = UserFactory()
    for task in TaskFactory.create_batch(5, owner=owner):
        task_services.complete_task(task, by=owner)
    rows = [row for chunk in export.chunks(export.Selection(), size=2) for row in chunk]
    assert len(rows) == 5


def test_the_pooler_settings() -> None:
    database = {"NAME": "selfos", "OPTIONS": {"connect_timeout": 5}, "CONN_MAX_AGE": 60}
    pooled = behind_transaction_pooler(database)
    assert pooled["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert pooled["OPTIONS"] == {"connect_timeout": 5, "prepare_threshold": None}
    assert pooled["CONN_MAX_AGE"] == 60  # a persistent connection holds a client slot, not a server one
    assert database["OPTIONS"] == {"connect_timeout": 5}  # a copy: the original is untouched
