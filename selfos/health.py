"""Liveness and readiness probes: /healthz says the process answers, /readyz that it can work."""

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from redis import Redis
from redis.exceptions import RedisError


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
        connection.close()
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def _check_broker() -> str | None:
    try:
        Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except (RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    failures = {
        name: reason
        for name, reason in (("database", _check_database()), ("broker", _check_broker()))
        if reason is not None
    }
    checks = {name: failures.get(name, "ok") for name in ("database", "broker")}
    if failures:
        return JsonResponse({"status": "unavailable", "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})
