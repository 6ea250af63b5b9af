"""Registration and token endpoints, and that everything else needs a token."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from .factories import UserFactory

pytestmark = pytest.mark.django_db


def test_register_returns_a_token_that_works(anon: APIClient) -> None:
    response = anon.post("/api/auth/register/", {"username": "ada", "password": "an unusual passphrase"})
    assert response.status_code == 201
    token = response.json()["token"]
    anon.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert anon.get("/api/goals/").status_code == 200


def test_register_rejects_a_taken_username_and_a_weak_password(anon: APIClient) -> None:
    UserFactory(username="ada")
    taken = anon.post("/api/auth/register/", {"username": "ADA", "password": "an unusual passphrase"})
    assert taken.status_code == 400
    assert "username" in taken.json()
    weak = anon.post("/api/auth/register/", {"username": "bob", "password": "123"})
    assert weak.status_code == 400
    # The password validators run in the serializer's validate(): their errors are non-field ones.
    assert weak.json() == {
        "non_field_errors": [
            "This password is too short. It must contain at least 8 characters.",
            "This password is too common.",
            "This password is entirely numeric.",
        ]
    }
    assert not get_user_model().objects.filter(username="bob").exists()


def test_register_rejects_unknown_fields(anon: APIClient) -> None:
    response = anon.post(
        "/api/auth/register/", {"username": "eve", "password": "an unusual passphrase", "is_staff": True}
    )
    assert response.status_code == 400
    assert response.json() == {"is_staff": ["Unknown field."]}
    assert not get_user_model().objects.filter(username="eve").exists()


def test_token_endpoint(anon: APIClient) -> None:
    UserFactory(username="ada")
    good = anon.post("/api/auth/token/", {"username": "ada", "password": "correct horse battery staple"})
    assert good.status_code == 200
    assert len(good.json()["token"]) == 40
    bad = anon.post("/api/auth/token/", {"username": "ada", "password": "wrong"})
    assert bad.status_code == 400
    assert "token" not in bad.json()


@pytest.mark.parametrize("path", ["/api/goals/", "/api/projects/", "/api/tasks/"])
def test_api_needs_authentication(anon: APIClient, path: str) -> None:
    response = anon.get(path)
    assert response.status_code == 401
    assert "detail" in response.json()


def test_a_bad_token_is_rejected(anon: APIClient) -> None:
    anon.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert anon.get("/api/goals/").status_code == 401
