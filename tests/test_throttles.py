"""Rate limits a stranger cannot talk their way around: per address (with only trusted proxies'
X-Forwarded-For), per user, and a tighter one for search. Failed logins: test_login_lockout.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from .conftest import client_for
from .factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(monkeypatch) -> Iterator[dict[str, str]]:
    """Tight limits for one test (DRF reads the rates once, at import), and an empty counter."""
    tight = {**api_settings.DEFAULT_THROTTLE_RATES, "auth": "3/minute", "user": "3/minute"}
    tight["memory_search"] = "2/minute"
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", tight)
    cache.clear()
    yield tight
    cache.clear()


def assert_429(response: Any) -> None:
    assert response.status_code == 429, response.content
    assert response["Content-Type"].startswith("application/json")
    assert int(response["Retry-After"]) > 0


def test_a_forged_x_forwarded_for_does_not_reset_the_address_limit(anon: APIClient, rates) -> None:
    """Without trusted proxies (DJANGO_NUM_PROXIES=0) the header is ignored."""
    codes = [
        anon.post(
            "/api/auth/token/", {"username": "x", "password": "y"}, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}"
        ).status_code
        for i in range(5)
    ]
    assert codes == [400, 400, 400, 429, 429]
    assert_429(
        anon.post("/api/auth/token/", {"username": "x", "password": "y"}, HTTP_X_FORWARDED_FOR="1.2.3.4")
    )


def test_behind_one_trusted_proxy_each_client_has_its_own_limit(anon: APIClient, rates, settings) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    for client in ("203.0.113.1", "203.0.113.2"):
        codes = [
            anon.post(
                "/api/auth/token/", {"username": "x", "password": "y"}, HTTP_X_FORWARDED_FOR=client
            ).status_code
            for _ in range(4)
        ]
        assert codes == [400, 400, 400, 429], client


def test_every_authenticated_endpoint_counts_against_its_user(rates) -> None:
    first = client_for(UserFactory())
    second = APIClient(REMOTE_ADDR="192.0.2.200")  # the same user from elsewhere: one budget
    second.credentials(HTTP_AUTHORIZATION=first._credentials["HTTP_AUTHORIZATION"])
    codes = [c.get("/api/goals/").status_code for c in (first, second, first, second)]
    assert codes == [200, 200, 200, 429]
    assert_429(second.get("/api/tasks/"))
    assert client_for(UserFactory()).get("/api/goals/").status_code == 200  # another user is not held


def test_a_burst_of_searches_gets_429_before_the_user_limit(rates) -> None:
    rates["user"] = "100/minute"
    api = client_for(UserFactory())
    codes = [api.get("/api/memory/search/", {"q": "garden"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert api.get("/api/goals/").status_code == 200  # the rest of the API still answers
