"""What RabbitMQ adds, tested on a real broker: publisher confirms, quorum queues, the
sweeper's backlog check and /readyz. The outbox's whole flow runs on it too, through the
broker matrix of tests/test_outbox_flow.py and tests/test_faults.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.test import Client
from kombu import Connection, Exchange, Producer

from outbox import registry, relay, sweeper
from outbox.dispatch import BrokerRefused
from outbox.models import Delivery
from outbox.publish import kick_relay
from selfos.celery import app as celery_app
from selfos.celery import declare_queues
from tasks_app import services as task_services

from .brokers import IN_CI, BrokerUnderTest
from .conftest import settle
from .factories import TaskFactory, UserFactory
from .test_health import free_port
from .testapp.models import Effect

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.parametrize("celery_broker", ["amqp"], indirect=True),
]


def rabbitmqctl(*args: str) -> str:
    if not shutil.which("rabbitmqctl"):
        message = "rabbitmqctl is needed to set a policy on the test vhost"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def vhost_of(broker: BrokerUnderTest) -> str:
    return broker.url.rsplit("/", 1)[-1]


def statuses() -> dict[str, str]:
    return dict(Delivery.objects.values_list("subscriber", "status"))


@contextlib.contextmanager
def refusing(broker: BrokerUnderTest, queue: str) -> Iterator[None]:
    """Make RabbitMQ refuse every publish to `queue`: a length limit of 0 that rejects
    publishes (a full queue). A quorum queue enforces it once it holds a message, so one
    filler goes in first; the limit is on once a publish of ours is nacked."""
    policy = json.dumps({"max-length": 0, "overflow": "reject-publish"})
    rabbitmqctl(
        "set_policy", "-p", vhost_of(broker), "--apply-to", "queues", "selfos-refuse", f"^{queue}$", policy
    )
    try:
        with Connection(broker.url, transport_options={"confirm_publish": True}) as connection:
            producer = connection.Producer(exchange=Exchange(queue, "topic"), routing_key=queue)
            deadline = time.monotonic() + 10
            while True:
                try:
                    producer.publish({"filler": True}, confirm_timeout=5)
                except Exception:  # noqa: BLE001 - amqp's MessageNacked: the policy is on
                    break
                assert time.monotonic() < deadline, "RabbitMQ never applied the length limit"
                time.sleep(0.05)
        yield
    finally:
        rabbitmqctl("clear_policy", "-p", vhost_of(broker), "selfos-refuse")
        broker.drop(queue)  # the fillers


def test_a_publish_the_broker_refuses_raises_and_the_sweeper_publishes_it_later(
    celery_broker: BrokerUnderTest, start_celery_worker, use_subscribers, settings
) -> None:
    use_subscribers("recorder", "second")
    settings.OUTBOX = {**settings.OUTBOX, "KICK": False}  # this test runs the relay itself
    declare_queues(celery_app)
    owner = UserFactory()
    with refusing(celery_broker, "test_second"):
        task_services.complete_task(TaskFactory(owner=owner), by=owner)
        with pytest.raises(BrokerRefused, match="refused 1 deliveries"):
            relay.relay_once()
        # Both deliveries were committed as dispatched before publishing (outbox/relay.py);
        # recorder's message was accepted, second's refused: nothing says it was sent.
        assert statuses() == {"recorder": "dispatched", "second": "dispatched"}
        assert celery_broker.depth("test_recorder") == 1
        # Without confirms the broker drops the same publish and the publisher never knows.
        with Connection(celery_broker.url) as unconfirmed:
            unconfirmed.Producer().publish(
                {"x": 1}, exchange=Exchange("test_second", "topic"), routing_key="test_second"
            )
        assert celery_broker.depth("test_second") == 1  # the filler alone

    start_celery_worker("test_recorder", "test_second")
    settle(lambda: statuses()["recorder"] == "succeeded", sweep=False)
    assert statuses()["second"] == "dispatched"  # late, not lost: the sweeper has it
    assert sweeper.sweep(lease_seconds=0) == {"retries": 0, "expired": 1}
    settle(lambda: statuses() == {"recorder": "succeeded", "second": "succeeded"}, sweep=False)
    assert sorted(Effect.objects.values_list("subscriber", flat=True)) == ["recorder", "second"]


def test_every_task_message_waits_for_its_confirm_no_longer_than_the_timeout(
    celery_broker: BrokerUnderTest, monkeypatch
) -> None:
    """A broker that blocks its publishers (a memory alarm) must not hang a web request's kick
    or the relay: Celery passes no confirm timeout of its own, selfos.celery adds it."""
    seen: list[object] = []
    monkeypatch.setattr(
        Producer, "publish", lambda self, body, **options: seen.append(options["confirm_timeout"])
    )
    registry.get("recorder").task.apply_async(args=[[1]], queue="test_recorder")
    kick_relay()
    assert seen == [celery_app.conf.broker_transport_options["confirm_timeout"]] * 2 == [10.0] * 2
    assert celery_app.conf.broker_transport_options["confirm_publish"] is True


def test_every_queue_is_a_quorum_queue(celery_broker: BrokerUnderTest) -> None:
    declare_queues(celery_app)
    listed = rabbitmqctl("list_queues", "-p", vhost_of(celery_broker), "name", "type")
    types = dict(line.split("\t") for line in listed.splitlines()[1:])
    expected = ["default", "outbox", *registry.queues()]
    assert {name: types.get(name) for name in expected} == dict.fromkeys(expected, "quorum")


def test_the_backlog_check_reads_rabbitmq_queues_and_skips_undeclared_ones(
    celery_broker: BrokerUnderTest,
) -> None:
    declare_queues(celery_app)
    with Connection(celery_broker.url, transport_options={"confirm_publish": True}) as connection:
        connection.Producer().publish(
            {"waiting": 1}, exchange=Exchange("test_second", "topic"), routing_key="test_second"
        )
    # RabbitMQ closes the channel of a passive declare that names no queue: the next
    # queue's count must still be read.
    queues = ["never_declared_1", "test_recorder", "never_declared_2", "test_second"]
    assert sweeper.queues_with_messages(queues) == {"test_second"}


def test_readyz_checks_rabbitmq(celery_broker: BrokerUnderTest, client: Client) -> None:
    assert client.get("/readyz").json() == {"status": "ok", "failed": []}
    saved = django_settings.CELERY_BROKER_URL
    django_settings.CELERY_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    try:
        response = client.get("/readyz")
    finally:
        django_settings.CELERY_BROKER_URL = saved
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["broker"]}
