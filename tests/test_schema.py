"""The OpenAPI schema a client team generates from: JSON request bodies only."""

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_request_body_is_documented_as_json_only(schema: dict[str, Any]) -> None:
    bodies = {
        f"{method.upper()} {path}": sorted(operation["requestBody"]["content"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "requestBody" in operation
    }
    assert len(bodies) >= 10  # the writes are there: goals, projects, tasks, media, devices, auth...
    assert {op: types for op, types in bodies.items() if types != ["application/json"]} == {}


@pytest.mark.django_db
def test_the_browsable_api_still_accepts_its_forms(api) -> None:
    """Only the documentation is narrowed: DRF's form parser still takes the browsable API's posts."""
    response = api.post("/api/goals/", {"title": "Run a marathon"}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["title"] == "Run a marathon"
