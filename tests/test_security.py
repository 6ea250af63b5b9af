"""Security: every API route needs a token except the public ones; auth endpoints are rate limited."""

import uuid

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

pytestmark = pytest.mark.django_db

PUBLIC = {("/api/auth/register/", "post"), ("/api/auth/token/", "post")}


def every_operation(client: APIClient) -> list[tuple[str, str]]:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    return [
        (path.replace("{id}", str(uuid.uuid4())), method)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_every_api_operation_but_register_and_token_needs_authentication(anon: APIClient) -> None:
    operations = every_operation(anon)
    assert len(operations) > 25
    for path, method in operations:
        response = getattr(anon, method)(path, {}, format="json")
        expected = {400} if (path, method) in PUBLIC else {401}
        assert response.status_code in expected, (method, path, response.status_code)
        assert response["Content-Type"].startswith("application/json")


def test_health_schema_and_docs_are_public(anon: APIClient) -> None:
    for path in ("/healthz", "/readyz", "/api/schema/", "/api/docs/"):
        assert anon.get(path).status_code == 200, path


@pytest.mark.parametrize("path", ["/api/auth/register/", "/api/auth/token/"])
def test_auth_endpoints_are_rate_limited(anon: APIClient, monkeypatch, path: str) -> None:
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth": "3/minute"})
    cache.clear()
    try:
        codes = [anon.post(path, {"username": f"u{i}", "password": "x"}).status_code for i in range(5)]
        assert codes[:3] == [400, 400, 400] and codes[3:] == [429, 429]
        limited = anon.post(path, {"username": "u", "password": "x"})
        assert "throttled" in limited.json()["detail"].lower() and "Retry-After" in limited
    finally:
        cache.clear()
