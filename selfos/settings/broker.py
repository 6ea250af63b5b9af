"""The Celery settings that depend on the broker CELERY_BROKER_URL names: Redis or RabbitMQ.

Settings modules call `celery_broker_settings()` and store what it returns under `CELERY_`
names; the tests call it too when they point the running Celery app at the other broker, so
both always get the same configuration for the same URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import environ

AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})


def is_amqp(url: str) -> bool:
    """True for a RabbitMQ (AMQP 0-9-1) URL, False for Redis and anything else."""
    return urlsplit(url).scheme in AMQP_SCHEMES


def celery_broker_settings(url: str, *, visibility_timeout: int, confirm_timeout: float) -> dict[str, Any]:
    """Celery's own setting names (lowercase, no CELERY_ prefix) and values for the broker at `url`."""
    if not is_amqp(url):
        return {
            "broker_transport_options": {
                # A message a dead worker held comes back after this long; the outbox
                # sweeper usually re-publishes such a delivery sooner.
                "visibility_timeout": visibility_timeout,
                "socket_connect_timeout": 2,
                # An open connection to a broker that went silent (a cut link) raises after this
                # instead of hanging for ever: a web request's relay kick would otherwise hold its
                # gunicorn worker until the link heals (seen in `make cluster`). Above the
                # workers' 1 s BRPOP poll.
                "socket_timeout": 5,
            },
            "task_default_queue_type": "classic",
            "task_create_missing_queue_type": "classic",
            "task_default_exchange_type": "direct",
            "task_create_missing_queue_exchange_type": None,
        }
    return {
        "broker_transport_options": {
            # Publisher confirms: a publish returns only once the broker has taken the message
            # (for a quorum queue: written by a majority of its replicas), and raises when the
            # broker refuses it (a full queue, a policy) instead of dropping it silently.
            "confirm_publish": True,
            # How long a publish waits for that confirm (selfos.celery applies it to every
            # task message): a broker that blocks publishers (memory or disk alarm) must not
            # hang a web request's kick or the relay for ever.
            "confirm_timeout": confirm_timeout,
            # py-amqp's own write timeout: a blocked socket raises instead of hanging.
            "write_timeout": confirm_timeout,
        },
        # Quorum queues: replicated by Raft across the cluster's nodes, they survive the loss of
        # a minority of nodes, and a message is confirmed only once a majority has it. Every
        # queue Celery declares (the outbox's, each subscriber's, declared when first published
        # to or consumed from, and by every worker at start) is one.
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        # Topic exchanges, because Celery's native delayed delivery (how a countdown works on
        # quorum queues, which allow no global prefetch) cannot route through direct ones: the
        # message a worker sends itself to retry after a database fault would otherwise sit in
        # the worker, holding its only prefetch slot, until its countdown ends.
        "task_default_exchange_type": "topic",
        "task_create_missing_queue_exchange_type": "topic",
        # Quorum queues refuse global QoS: Celery detects them and uses per-consumer prefetch.
        "worker_detect_quorum_queues": True,
        "broker_native_delayed_delivery_queue_type": "quorum",
    }


def celery_settings(url: str, env: environ.Env) -> dict[str, Any]:
    """The same, under the CELERY_ names of Django settings, with the timeouts the environment sets:
    CELERY_VISIBILITY_TIMEOUT (Redis, seconds) and CELERY_CONFIRM_TIMEOUT (RabbitMQ, seconds)."""
    found = celery_broker_settings(url, **timeouts(env))
    return {f"CELERY_{name.upper()}": value for name, value in found.items()}


def timeouts(env: environ.Env) -> dict[str, Any]:
    return {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
        "confirm_timeout": env.float("CELERY_CONFIRM_TIMEOUT", default=10.0),
    }
