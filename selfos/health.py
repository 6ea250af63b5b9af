"""Liveness and readiness probes: /healthz says the process answers, /readyz that it can work.

Both are public (load balancers call them without credentials), so /readyz names the check that
failed and nothing more: the exception text, which carries the database host and user, goes to
the server's log.
"""

import logging

from amqp.exceptions import AMQPError
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from kombu import Connection
from kombu.exceptions import KombuError
from redis import Redis
from redis.exceptions import RedisError

from selfos.settings.broker import is_amqp

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the reason is logged
        connection.close()
        logger.warning("readiness check database failed: %s: %s", type(exc).__name__, exc)
        return False
    return True


def _check_broker() -> bool:
    url = settings.CELERY_BROKER_URL
    try:
        if is_amqp(url):
            # The AMQP handshake, logged in and on the vhost: what a publish needs first.
            with Connection(url, connect_timeout=1) as broker:
                broker.connect()
        else:
            Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except (RedisError, OSError, AMQPError, KombuError) as exc:
        logger.warning("readiness check broker failed: %s: %s", type(exc).__name__, exc)
        return False
    return True


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database, "broker": _check_broker}
    failed = [name for name, check in checks.items() if not check()]
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed}, status=503)
    return JsonResponse({"status": "ok", "failed": []})
