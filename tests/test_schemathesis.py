"""Property-based API testing from our own OpenAPI schema (schemathesis), authenticated, every operation.

Bounded for CI: a few examples per operation. The checks: no server errors, and
every response conforms to the schema (body and content type) for what it documents.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from selfos.wsgi import application

from .factories import TokenFactory

EXAMPLES_PER_OPERATION = 12
pytestmark = pytest.mark.django_db(transaction=True)
CASES_RUN = [0]  # reported in the run's summary (conftest)

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def auth_header(transactional_db) -> dict[str, str]:
    return {"Authorization": f"Token {TokenFactory().key}"}


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_keeps_its_contract(case, auth_header) -> None:
    CASES_RUN[0] += 1
    case.call_and_validate(
        headers=auth_header,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
