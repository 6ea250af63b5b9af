"""The broker matrix: the outbox's end-to-end tests run on Redis and on RabbitMQ.

`celery_broker` is parametrized over both. On "amqp" it points this process's Celery app
(and Django's CELERY_BROKER_URL, which /readyz reads) at a RabbitMQ vhost of the test
run's own, with the settings the product uses for RabbitMQ (quorum queues, publisher
confirms: selfos/settings/broker.py), and tells worker processes started meanwhile to use
it too. Redis stays the cache (the relay's kick marks) and the tests' own key store.

RabbitMQ is expected on 127.0.0.1:5672 (guest/guest; `.ci/run` starts it) or at
TEST_AMQP_URL. Where it cannot be reached the amqp tests skip, saying why; under CI=true
they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import environ
import pytest
from django.conf import settings
from kombu import Connection, pools
from redis import Redis

from selfos.celery import app as celery_app
from selfos.settings.broker import celery_broker_settings, is_amqp, timeouts

IN_CI = os.environ.get("CI") == "true"
LOCAL_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"
# The variable that hands the broker to `celery worker` processes (selfos/settings/test.py).
WORKER_BROKER_VARIABLE = "SELFOS_TEST_BROKER_URL"


class BrokerUnderTest:
    """The broker the Celery app uses in this test, with what tests do to its queues."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url

    def depth(self, queue: str) -> int:
        """Messages waiting in `queue`, not yet taken by a worker (0 if it was never declared)."""
        if self.kind == "redis":
            return int(Redis.from_url(self.url).llen(queue))
        with Connection(self.url) as connection:
            try:
                return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors:
                return 0

    def drop(self, *queues: str) -> None:
        """Lose every message waiting in `queues`: a broker restarted without them."""
        if self.kind == "redis":
            if queues:
                Redis.from_url(self.url).delete(*queues)
            return
        with Connection(self.url) as connection:
            for queue in queues:
                # py-amqp reopens a channel the broker closed over a queue that does not exist.
                with contextlib.suppress(*connection.channel_errors):
                    connection.default_channel.queue_purge(queue)


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["rabbitmqctl", "-q", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _unreachable(reason: str) -> None:
    message = f"RabbitMQ is needed for the amqp half of the broker matrix: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: .ci/run starts it with `rabbitmq-server -detached`)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A RabbitMQ vhost of this test run's own, named after its database, emptied at start."""
    if given := os.environ.get("TEST_AMQP_URL"):
        url = given
        vhost = None
    else:
        if not shutil.which("rabbitmqctl"):
            _unreachable("rabbitmqctl is not installed (or set TEST_AMQP_URL to a broker and vhost)")
        vhost = "selfos_" + settings.DATABASES["default"]["NAME"].removeprefix("test_")
        _rabbitmqctl("delete_vhost", vhost)  # a vhost a killed run left behind, queues and all
        made = _rabbitmqctl("add_vhost", vhost)
        if made.returncode != 0:
            _unreachable(f"`rabbitmqctl add_vhost {vhost}` failed: {(made.stderr or made.stdout).strip()}")
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        url = f"{LOCAL_RABBITMQ}/{vhost}"
    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.connect()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not here"
        _unreachable(f"cannot connect to {url.rsplit('@', 1)[-1]}: {type(exc).__name__}: {exc}")
    yield url
    if vhost:
        _rabbitmqctl("delete_vhost", vhost)


def _reset_connections() -> None:
    """Forget the app's pooled connections and everything built from the old settings:
    queue declarations (their type), the router, the producer pool, remote control."""
    # The app's connection pool lives in kombu's process-wide pool groups, keyed by URL: a
    # pool closed here but left there would be handed out again, closed, for the same URL.
    pools.reset()
    celery_app._pool = None
    for cached in ("amqp", "control", "events"):
        celery_app.__dict__.pop(cached, None)


@contextlib.contextmanager
def celery_on(url: str) -> Iterator[None]:
    """Point the Celery app (and Django's CELERY_BROKER_URL) at `url` with its broker's settings."""
    wanted: dict[str, Any] = {
        "broker_url": url,
        **celery_broker_settings(url, **timeouts(environ.Env())),
    }
    saved_conf = {name: celery_app.conf[name] for name in wanted}
    saved_django = settings.CELERY_BROKER_URL
    celery_app.conf.update(wanted)
    settings.CELERY_BROKER_URL = url
    _reset_connections()
    try:
        yield
    finally:
        celery_app.conf.update(saved_conf)
        settings.CELERY_BROKER_URL = saved_django
        _reset_connections()


@pytest.fixture(params=["redis", "amqp"])
def celery_broker(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BrokerUnderTest]:
    """The broker matrix: this test runs once on Redis and once on RabbitMQ (quorum queues,
    publisher confirms), in this process and in the worker processes it starts."""
    from outbox import registry

    from .conftest import ALL_TEST_QUEUES

    if request.param == "redis":
        yield BrokerUnderTest("redis", settings.CELERY_BROKER_URL)
        return
    url = request.getfixturevalue("amqp_url")
    monkeypatch.setenv(WORKER_BROKER_VARIABLE, url)
    with celery_on(url):
        under_test = BrokerUnderTest("amqp", url)
        # Messages earlier tests left behind name rows their rollback removed.
        under_test.drop(*{*ALL_TEST_QUEUES, *registry.queues()})
        yield under_test


def broker_first(request: pytest.FixtureRequest) -> None:
    """Set up the test's `celery_broker`, if it has one, before a worker that must use it."""
    if "celery_broker" in request.fixturenames:
        request.getfixturevalue("celery_broker")


def wake_to_stop(worker: Any) -> None:
    """Let an in-thread worker on RabbitMQ stop at once rather than in up to 10 s.

    It stops when its event loop sees the stop flag, and on RabbitMQ (no heartbeats in the
    test worker) nothing wakes that loop until its next timer; a control message does.
    """
    if not is_amqp(celery_app.conf.broker_url):
        return
    from celery.worker import state

    state.should_terminate = 0  # what start_worker sets on exit, a moment earlier
    celery_app.control.broadcast("ping", destination=[worker.hostname], reply=False)


def in_thread_pool() -> str:
    """The pool of the tests' in-thread worker: solo on Redis, threads on RabbitMQ.

    With the solo pool a worker running in a thread of the test process on RabbitMQ left a
    message that arrived on a queue just after it acknowledged the previous one unread
    until its event loop's next timer, up to 10 s later; the threads pool does not, nor
    do `celery worker` processes with any pool (measured with solo, threads and prefork).
    """
    return "threads" if is_amqp(celery_app.conf.broker_url) else "solo"
