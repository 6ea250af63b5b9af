"""Failed-login lockouts no stranger can aim: the (username, address) pair locks first; an
address only after many more failures; a username never at the addresses its user logs in from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from axes.models import AccessLog
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient

from .test_throttles import assert_429

pytestmark = pytest.mark.django_db

RIGHT = "the-right-one-42"
HOME = "192.0.2.10"


@pytest.fixture
def axes_on(settings) -> Iterator[None]:
    """The three limits made small: pair 3, username 5, address 6."""
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 3
    settings.SELFOS_LOGIN_USERNAME_FAILURE_LIMIT = 5
    settings.SELFOS_LOGIN_ADDRESS_FAILURE_LIMIT = 6
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alice(db: None) -> Any:
    return get_user_model().objects.create_user("alice", password=RIGHT)


def login(address: str, username: str, password: str) -> Any:
    return APIClient(REMOTE_ADDR=address).post(
        "/api/auth/token/", {"username": username, "password": password}
    )


def logs_in(address: str, username: str, password: str = RIGHT) -> bool:
    response = login(address, username, password)
    return response.status_code == 200 and "token" in response.json()


def test_failures_lock_the_username_at_that_address_only(axes_on, alice) -> None:
    get_user_model().objects.create_user("bob", password=RIGHT)
    codes = [login("198.51.100.9", "alice", f"guess{i}").status_code for i in range(3)]
    assert codes == [400, 400, 429]  # the third failure locks the pair out
    locked = login("198.51.100.9", "alice", RIGHT)  # the right password does not help meanwhile
    assert_429(locked)
    assert locked.json()["code"] == "login_locked_out" and "token" not in locked.json()
    assert logs_in(HOME, "alice")  # alice elsewhere
    assert logs_in("198.51.100.9", "bob")  # and everyone else at that address


def test_a_stranger_cannot_lock_an_address_out_for_everyone_there(axes_on, alice) -> None:
    """The issue's case: a made-up username tried over and over behind a shared address, and
    a staff member there then logs in to the admin with the right password."""
    get_user_model().objects.create_superuser("root", password=RIGHT)
    nat = "198.51.100.20"
    codes = [login(nat, "made-up", "x").status_code for _ in range(5)]
    assert codes == [400, 400, 429, 429, 429]  # locked: but only that pair
    admin = APIClient(REMOTE_ADDR=nat).post(
        "/admin/login/?next=/admin/", {"username": "root", "password": RIGHT}, format="multipart"
    )
    assert admin.status_code == 302 and admin["Location"] == "/admin/", admin.content[:300]
    assert logs_in(nat, "alice")


def test_spraying_many_usernames_locks_the_address_out(axes_on, alice) -> None:
    sprayer = "203.0.113.5"
    codes = [login(sprayer, f"user{i}", "Winter2026!").status_code for i in range(6)]
    assert codes == [400, 400, 400, 400, 400, 429]  # the address's own, higher, limit
    assert_429(login(sprayer, "alice", RIGHT))
    assert logs_in(HOME, "alice")


def test_logging_in_to_ones_own_account_does_not_reset_the_address(axes_on, alice) -> None:
    """A success resets the pair's failures, not the address's: a sprayer with an account of
    their own cannot wipe their count between guesses."""
    get_user_model().objects.create_user("mallory", password=RIGHT)
    sprayer = "203.0.113.6"
    for i in range(5):
        assert login(sprayer, f"user{i}", "x").status_code == 400
    assert logs_in(sprayer, "mallory")
    assert_429(login(sprayer, "user9", "x"))


def test_strangers_cannot_lock_a_known_user_out_from_everywhere(axes_on, alice) -> None:
    assert logs_in(HOME, "alice")  # where alice logs in from
    assert AccessLog.objects.filter(username="alice", ip_address=HOME).exists()
    # Five strangers, each under the pair's limit, reach the username's limit together.
    codes = [login(f"198.51.100.{40 + i}", "alice", f"guess{i}").status_code for i in range(5)]
    assert codes == [400, 400, 400, 400, 429]
    # A new place is locked out now, even with the right password ...
    assert_429(login("198.51.100.99", "alice", RIGHT))
    # ... but not alice at home.
    assert logs_in(HOME, "alice")


def test_a_token_login_is_recorded_and_resets_its_pair(axes_on, alice) -> None:
    for i in range(2):
        assert login(HOME, "alice", f"typo{i}").status_code == 400
    assert logs_in(HOME, "alice")
    alice.refresh_from_db()
    assert alice.last_login is not None
    # The two typos are forgotten: two more failures do not lock the pair.
    assert [login(HOME, "alice", f"typo{i}").status_code for i in range(2)] == [400, 400]
    assert logs_in(HOME, "alice")


def test_the_admin_login_is_limited_too(axes_on) -> None:
    get_user_model().objects.create_superuser("root", password=RIGHT)
    browser = APIClient(REMOTE_ADDR="198.51.100.30")
    codes = [
        browser.post(
            "/admin/login/", {"username": "root", "password": "nope"}, format="multipart"
        ).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]  # the form again with its error, then locked out
    assert_429(browser.post("/admin/login/", {"username": "root", "password": RIGHT}, format="multipart"))


def test_login_records_are_kept_only_as_long_as_the_lockout_reads_them(alice, settings) -> None:
    from datetime import timedelta

    from axes.models import AccessAttempt
    from django.utils import timezone

    from selfos.accounts.tasks import prune_login_records
    from selfos.celery import app

    now = timezone.now()
    known = now - timedelta(days=settings.SELFOS_LOGIN_KNOWN_ADDRESS_DAYS)
    rows = {
        AccessLog.objects.create(username="alice", ip_address=HOME, user_agent=""): known - timedelta(days=1),
        AccessLog.objects.create(username="alice", ip_address="192.0.2.11", user_agent=""): now,
        AccessAttempt.objects.create(
            username="alice", ip_address="198.51.100.1", user_agent="", failures_since_start=1
        ): now - settings.AXES_COOLOFF_TIME - timedelta(minutes=1),
        AccessAttempt.objects.create(
            username="alice", ip_address=HOME, user_agent="", failures_since_start=1
        ): now,
    }
    for row, when in rows.items():  # attempt_time is auto_now_add: set afterwards
        type(row).objects.filter(pk=row.pk).update(attempt_time=when)
    assert prune_login_records() == {"access logs": 1, "access attempts": 1, "failure logs": 0}
    assert list(AccessLog.objects.values_list("ip_address", flat=True)) == ["192.0.2.11"]
    assert AccessAttempt.objects.get().ip_address == HOME
    entry = app.conf.beat_schedule["accounts-prune-login-records"]
    assert entry["task"] == prune_login_records.name and entry["options"]["queue"] == "outbox"
    assert "selfos.accounts.tasks" in app.conf.imports  # a worker registers the task at start
