"""Push devices: a token is active on one account at most, registering answers alike whatever the
token's history, an account has at most 10 active devices, a token at most 4,096 bytes."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connections, transaction
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient

from workers.models import Device
from workers.notifications import api as devices_api
from workers.notifications.api import MOVED_REASON

from .factories import TokenFactory, UserFactory

MAX_DEVICES = 10  # SELFOS_MAX_DEVICES_PER_USER's default (README)
MAX_TOKEN_BYTES = 4096  # SELFOS_MAX_DEVICE_TOKEN_BYTES's default


def register(client: APIClient, token: str, platform: str = "android") -> Any:
    return client.post("/api/devices/", {"token": token, "platform": platform})


def shape(body: dict[str, Any]) -> dict[str, type]:
    return {key: type(value) for key, value in body.items()}


def test_the_defaults_are_the_documented_ones(settings: Any) -> None:
    assert settings.SELFOS_MAX_DEVICES_PER_USER == MAX_DEVICES
    assert settings.SELFOS_MAX_DEVICE_TOKEN_BYTES == MAX_TOKEN_BYTES


# --- One answer, whatever the token's history ----------------------------------------------


@pytest.mark.django_db
def test_the_answer_does_not_tell_whether_a_token_was_known(
    api: APIClient, user, other_api: APIClient, other_user
) -> None:
    theirs = register(other_api, "their-phone").json()
    new = register(api, "my-phone")
    moved = register(api, "their-phone")
    again = register(api, "my-phone")
    assert [r.status_code for r in (new, moved, again)] == [201, 201, 201]
    assert shape(new.json()) == shape(moved.json()) == shape(again.json())
    # The moved token is a new device of the caller, not the other account's row handed over:
    # nothing in it (id, created_at, active) differs from a never-seen token's.
    assert moved.json()["id"] != theirs["id"]
    assert moved.json()["created_at"] > theirs["created_at"]
    assert moved.json()["active"] is new.json()["active"] is True
    assert set(moved.json()) == {"id", "token", "platform", "active", "created_at"}


@pytest.mark.django_db
def test_re_registering_ones_own_token_is_the_same_device(api: APIClient, user) -> None:
    first = register(api, "phone", "android").json()
    again = register(api, "phone", "ios").json()
    assert again["id"] == first["id"] and again["platform"] == "ios"
    assert Device.objects.filter(owner=user).count() == 1


@pytest.mark.django_db
def test_a_moved_token_deactivates_the_previous_owners_device(
    api: APIClient, user, other_api: APIClient, other_user
) -> None:
    theirs = register(other_api, "shared-phone").json()
    register(api, "shared-phone", "ios")
    previous = Device.objects.get(pk=theirs["id"])
    assert (previous.owner, previous.active, previous.deactivated_reason) == (other_user, False, MOVED_REASON)
    assert [d["active"] for d in other_api.get("/api/devices/").json()["results"]] == [False]
    active = Device.objects.get(token="shared-phone", active=True)
    assert (active.owner, active.platform) == (user, "ios")
    # Back to the first account (it logs in again on that phone): its own row comes back.
    back = register(other_api, "shared-phone").json()
    assert back["id"] == theirs["id"] and back["active"] is True
    assert Device.objects.get(owner=user, token="shared-phone").active is False
    assert Device.objects.filter(token="shared-phone").count() == 2


@pytest.mark.django_db
def test_a_device_goes_only_to_its_owner_and_a_token_is_active_once() -> None:
    one, two = UserFactory(), UserFactory()
    Device.objects.create(owner=one, token="t", platform="android")
    with pytest.raises(IntegrityError), transaction.atomic():
        Device.objects.create(owner=two, token="t", platform="android")  # active twice
    with pytest.raises(IntegrityError), transaction.atomic():
        Device.objects.create(owner=one, token="t", platform="ios", active=False)  # twice for one
    Device.objects.create(owner=two, token="t", platform="android", active=False)


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["plain", "back\\slash\\\\x41\\000", "é✓😀", "\\", "a" * 3000])
def test_the_database_hashes_a_token_as_python_does(user, token: str) -> None:
    device = Device.objects.create(owner=user, token=token, platform="web")
    device.refresh_from_db()
    assert device.token_hash == Device.hash_token(token) == hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.django_db
def test_a_registration_for_an_account_deleted_meanwhile_is_a_401_not_a_crash(user) -> None:
    get_user_model().objects.filter(pk=user.pk).delete()  # after authentication, before the write
    with pytest.raises(AuthenticationFailed):
        devices_api.register_device(user, "phone", "android")
    assert not Device.objects.exists()


# --- At most 10 active devices an account ---------------------------------------------------


@pytest.mark.django_db
def test_the_eleventh_device_is_a_400_that_changes_nothing(
    api: APIClient, user, other_api: APIClient, other_user
) -> None:
    for i in range(MAX_DEVICES):
        assert register(api, f"mine-{i}").status_code == 201
    register(other_api, "theirs")
    refused = register(api, "theirs")
    assert refused.status_code == 400
    full = (
        f"An account has at most {MAX_DEVICES} active devices; remove one (DELETE /api/devices/{{id}}/) "
        "first."
    )
    assert refused.json() == {"non_field_errors": [full]}
    assert register(api, "brand-new").status_code == 400
    # Nothing changed: the other account keeps its device, the caller has no new row.
    assert Device.objects.get(token="theirs").owner == other_user
    assert Device.objects.get(token="theirs").active
    assert Device.objects.filter(owner=user).count() == MAX_DEVICES
    # Re-registering a device the caller has is not a new one, and a removed one frees a place.
    assert register(api, "mine-3", "ios").status_code == 201
    assert api.delete(f"/api/devices/{Device.objects.get(token='mine-0').pk}/").status_code == 204
    assert register(api, "brand-new").status_code == 201


@pytest.mark.django_db
def test_inactive_devices_do_not_count_but_reactivating_one_does(api: APIClient, user, settings: Any) -> None:
    settings.SELFOS_MAX_DEVICES_PER_USER = 2
    Device.objects.create(owner=user, token="dead", platform="android", active=False)
    assert register(api, "a").status_code == 201
    assert register(api, "b").status_code == 201
    assert register(api, "dead").status_code == 400
    assert not Device.objects.get(token="dead").active


# --- A token's length -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_token_of_the_maximum_length_is_stored(api: APIClient, user) -> None:
    # Random, so incompressible: an index on the raw token could not hold it (btree: ~2,700 bytes).
    token = secrets.token_urlsafe(MAX_TOKEN_BYTES)[:MAX_TOKEN_BYTES]
    created = register(api, token)
    assert created.status_code == 201, created.content[:300]
    assert Device.objects.get(owner=user).token == token
    assert register(api, token).json()["id"] == created.json()["id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "token",
    ["x" * (MAX_TOKEN_BYTES + 1), "é" * (MAX_TOKEN_BYTES // 2 + 1)],  # bytes count, not characters
    ids=["ascii", "two-byte characters"],
)
def test_a_token_past_the_limit_is_a_clear_400(api: APIClient, user, token: str) -> None:
    refused = register(api, token)
    assert refused.status_code == 400
    assert refused.json() == {"token": [f"A device token is at most {MAX_TOKEN_BYTES} bytes in UTF-8."]}
    assert not Device.objects.exists()


@pytest.mark.django_db
def test_a_token_of_exactly_the_limit_in_two_byte_characters_is_accepted(api: APIClient) -> None:
    assert register(api, "é" * (MAX_TOKEN_BYTES // 2)).status_code == 201


@pytest.mark.django_db
def test_a_lone_surrogate_is_a_400_not_a_crash(api: APIClient) -> None:
    body = b'{"token": "abc\\ud800", "platform": "android"}'
    refused = api.post("/api/devices/", body, content_type="application/json")
    assert refused.status_code == 400 and set(refused.json()) == {"token"}
    assert not Device.objects.exists()


# --- Registrations at the same moment -------------------------------------------------------------


def at_once(monkeypatch: pytest.MonkeyPatch, *calls: tuple[str, str]) -> list[int]:
    """POST each (API key, token) at the same moment; each registration, once it has written,
    waits a little before it commits, so the others come in while it holds its locks."""
    register_device = devices_api._register_device

    def slow(*args: Any) -> Device:
        device = register_device(*args)
        time.sleep(0.5)
        return device

    monkeypatch.setattr(devices_api, "_register_device", slow)
    statuses: list[int] = []
    start = threading.Barrier(len(calls))

    def post(key: str, token: str) -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            start.wait()
            statuses.append(register(client, token).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=call) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return sorted(statuses)


@pytest.mark.django_db(transaction=True)
def test_two_registrations_at_once_cannot_both_take_the_last_place(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.SELFOS_MAX_DEVICES_PER_USER = 2
    user = UserFactory()
    Device.objects.create(owner=user, token="old", platform="android")
    key = TokenFactory(user=user).key
    assert at_once(monkeypatch, (key, "new-1"), (key, "new-2")) == [201, 400]
    assert Device.objects.filter(owner=user, active=True).count() == 2


@pytest.mark.django_db(transaction=True)
def test_one_new_token_registered_by_two_accounts_at_once_ends_active_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one, two = UserFactory(), UserFactory()
    keys = [TokenFactory(user=one).key, TokenFactory(user=two).key]
    assert at_once(monkeypatch, (keys[0], "same-phone"), (keys[1], "same-phone")) == [201, 201]
    assert Device.objects.filter(token="same-phone").count() == 2
    assert Device.objects.filter(token="same-phone", active=True).count() == 1
    (inactive,) = Device.objects.filter(token="same-phone", active=False)
    assert inactive.deactivated_reason == MOVED_REASON
