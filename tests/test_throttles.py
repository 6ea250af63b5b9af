"""Rate limits a stranger cannot talk their way around: per address (with only trusted proxies'
X-Forwarded-For), per username for failed logins, per user, and a tighter one for search."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
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


@pytest.fixture
def axes_on(settings) -> Iterator[None]:
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 3
    cache.clear()
    yield
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


def test_failed_logins_lock_a_username_out_from_every_address(axes_on) -> None:
    get_user_model().objects.create_user("alice", password="the-right-one-42")
    codes = [
        APIClient(REMOTE_ADDR=f"198.51.100.{i}")
        .post("/api/auth/token/", {"username": "alice", "password": f"guess{i}"})
        .status_code
        for i in range(3)
    ]
    assert codes == [400, 400, 429]  # the third failure locks the username out
    # Locked out now, from a fresh address and even with the right password.
    locked = APIClient(REMOTE_ADDR="192.0.2.77").post(
        "/api/auth/token/", {"username": "alice", "password": "the-right-one-42"}
    )
    assert_429(locked)
    assert locked.json()["code"] == "login_locked_out"
    assert "token" not in locked.json()


def test_failed_logins_lock_an_address_out_for_every_username(axes_on) -> None:
    get_user_model().objects.create_user("bob", password="the-right-one-42")
    stranger = APIClient(REMOTE_ADDR="198.51.100.9")
    codes = [stranger.post("/api/auth/token/", {"username": n, "password": "x"}).status_code for n in "cde"]
    assert codes == [400, 400, 429]
    assert_429(stranger.post("/api/auth/token/", {"username": "bob", "password": "the-right-one-42"}))
    # Someone else, elsewhere, still logs in.
    elsewhere = APIClient(REMOTE_ADDR="192.0.2.8")
    assert (
        "token"
        in elsewhere.post("/api/auth/token/", {"username": "bob", "password": "the-right-one-42"}).json()
    )


def test_the_admin_login_is_limited_too(axes_on) -> None:
    get_user_model().objects.create_superuser("root", password="the-right-one-42")
    browser = APIClient(REMOTE_ADDR="198.51.100.20")
    codes = [
        browser.post(
            "/admin/login/", {"username": "root", "password": "nope"}, format="multipart"
        ).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]  # the form again with its error, then locked out
    locked = browser.post(
        "/admin/login/", {"username": "root", "password": "the-right-one-42"}, format="multipart"
    )
    assert_429(locked)


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
