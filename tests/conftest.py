"""Shared fixtures: API clients, factories' products, a real Celery worker on Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.cache import cache
from redis import Redis
from rest_framework.test import APIClient

from outbox import coalesce, registry, sweeper
from outbox.delivery import run_deliveries
from outbox.models import OutboxEvent
from outbox.publish import KICK_PENDING_KEY
from selfos.celery import app as celery_app
from workers.notifications import push
from workers.story import writers

from . import registry as test_registry
from . import subscribers as test_subscribers  # registers the tests' subscribers
from .brokers import amqp_url, broker_first, celery_broker, in_thread_pool, wake_to_stop  # noqa: F401
from .deliveries import dispatched
from .factories import TokenFactory, UserFactory
from .fakes import FakeChat, FakeFCM


@pytest.fixture
def user(db: None) -> Any:
    return UserFactory()


@pytest.fixture
def other_user(db: None) -> Any:
    return UserFactory()


def client_for(user: Any) -> APIClient:
    client = APIClient()
    token = TokenFactory(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(user: Any) -> APIClient:
    """An API client authenticated with `user`'s token."""
    return client_for(user)


@pytest.fixture
def other_api(other_user: Any) -> APIClient:
    return client_for(other_user)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session")
def broker() -> Redis:
    """The tests' own Redis database, emptied once per session."""
    redis = Redis.from_url(settings.REDIS_URL)
    redis.flushdb()
    return redis


@pytest.fixture(autouse=True)
def _reset_test_subscribers() -> Iterator[None]:
    test_subscribers.calls.clear()
    test_subscribers.healed.clear()
    # A kick an earlier test queued and nobody ran would hold this test's kicks back (no beat here).
    cache.delete(KICK_PENDING_KEY)
    for sub in registry.all_subscribers():  # so would a queued-message mark (outbox/coalesce.py)
        coalesce.started(sub.name)
    yield


@pytest.fixture
def use_subscribers() -> Iterator[Callable[..., None]]:
    """Activate only the named subscribers for this test."""
    with contextlib.ExitStack() as stack:
        yield lambda *names: stack.enter_context(test_registry.only(*names))


ALL_TEST_QUEUES = ["outbox", *test_subscribers.TEST_QUEUES]


@pytest.fixture
def start_celery_worker(
    request: pytest.FixtureRequest, transactional_db: None, broker: Redis
) -> Iterator[Callable[..., Any]]:
    """Start a real Celery worker (in a thread of this process) on exactly the given queues."""
    broker_first(request)
    product = [q for q in registry.queues() if not q.startswith("test_")]
    # Messages earlier tests left in the queues name rows their rollback removed; a worker
    # taking them would also take this test's waiting deliveries, before the test looks.
    broker.delete(*ALL_TEST_QUEUES, *product)
    with contextlib.ExitStack() as stack:

        def start(*queues: str) -> Any:
            # No queues named: the tests' usual ones and the product subscribers'.
            names = list(queues) or sorted({*ALL_TEST_QUEUES, *product})
            worker = stack.enter_context(
                start_worker(
                    celery_app,
                    pool=in_thread_pool(),
                    concurrency=1,
                    queues=names,
                    perform_ping_check=False,
                    shutdown_timeout=30,
                    loglevel="WARNING",
                )
            )
            stack.callback(wake_to_stop, worker)
            return worker

        yield start


@pytest.fixture
def celery_worker(start_celery_worker: Callable[..., Any]) -> Any:
    """A real Celery worker consuming the outbox queue and every subscriber's queue."""
    return start_celery_worker()


ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A real `celery worker` process on the test database and broker."""

    def __init__(self, name: str, queues: list[str], concurrency: int, pool: str, **env: str) -> None:
        self.hostname = f"{name}@{socket.gethostname()}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"celery-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "selfos.settings.test",
            "SELFOS_TEST_DB_NAME": settings.DATABASES["default"]["NAME"],
            **env,
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "selfos",
                "worker",
                "-n",
                self.hostname,
                "-Q",
                ",".join(queues),
                "-c",
                str(concurrency),
                "-P",
                pool,
                "--include",
                "tests.subscribers",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "INFO",
            ],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not celery_app.control.ping(destination=[self.hostname], timeout=0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"worker {self.hostname} did not start:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture
def worker_process(
    request: pytest.FixtureRequest, transactional_db: None, broker: Redis
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes (`celery -A selfos worker`) on the given queues (and environment)."""
    broker_first(request)
    started: list[WorkerProcess] = []

    def start(*queues: str, concurrency: int = 1, pool: str = "prefork", **env: str) -> WorkerProcess:
        worker = WorkerProcess(f"w{len(started)}", list(queues), concurrency, pool, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def settle(condition: Callable[[], bool], timeout: float = 20.0, sweep: bool = True) -> None:
    """Wait until `condition()` holds, ticking the sweeper as beat would."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        if sweep:
            sweeper.sweep()
        time.sleep(0.05)


@pytest.fixture(scope="session")
def fake_fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFCM]:
    """One loopback FCM for the session; firebase-admin builds its send URL from FCM_URL."""
    from firebase_admin import messaging

    server = FakeFCM(tmp_path_factory.mktemp("fcm"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(messaging._MessagingService, "FCM_URL", server.send_url_template)
        yield server
    server.close()


@pytest.fixture
def fcm(fake_fcm: FakeFCM, settings: Any) -> FakeFCM:
    """Push through the real firebase-admin client to the loopback FCM."""
    fake_fcm.reset()
    settings.PUSH_BACKEND = "fcm"
    settings.FCM_CREDENTIALS_FILE = str(fake_fcm.credentials_file)
    return fake_fcm


@pytest.fixture
def fake_chat(settings: Any) -> Iterator[FakeChat]:
    """Write stories with the OpenAI-compatible writer against a loopback chat server."""
    server = FakeChat()
    settings.STORY_WRITER = "openai"
    settings.STORY_LLM_BASE_URL = server.base_url
    settings.STORY_LLM_MODEL = "fake-model"
    settings.STORY_LLM_API_KEY = "sk-test"
    settings.STORY_LLM_TIMEOUT = 1.0
    writers.get_writer.cache_clear()
    yield server
    writers.get_writer.cache_clear()
    server.close()


@pytest.fixture(autouse=True)
def _clean_subscriber_state() -> Iterator[None]:
    push.sent.clear()
    writers.get_writer.cache_clear()
    yield


def deliver(subscriber: str, event: OutboxEvent) -> dict[str, int]:
    """Run one subscriber on one event through the real delivery wrapper (as a worker would)."""
    return run_deliveries(subscriber, dispatched(subscriber, [event]))


def events_of(event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(type=event_type).order_by("id"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    module = sys.modules.get("tests.test_schemathesis")
    if module and module.CASES_RUN[0]:
        terminalreporter.write_line(f"schemathesis: {module.CASES_RUN[0]} generated API cases run")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `chaos` run after all others, whatever their file names: they crash-restart
    PostgreSQL, which drops every connection, this session's included. `trylast` so that
    pytest-django's own reordering (by test case type) comes first and this one wins."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)
