"""Property-based API testing from our own OpenAPI schema (schemathesis), authenticated, every operation.

Bounded for CI: a few examples per operation. The checks: no server errors, and
every response conforms to the schema (body and content type) for what it documents.

The caller owns real data, made by the real code (a goal, a project, a task with media,
a device, and one completed task that the four subscribers have handled: a progress
snapshot, a story segment, a notification with its push, a memory entry), so lists and
nested fields are not empty. An operation on one object (`/api/goals/{id}/`, ...) runs
on the caller's own object of that kind, except in the cases about the id itself: the
coverage cases that vary it (missing, malformed) and about half the fuzzed cases keep the
id schemathesis generated (unknown: the 404 path).
"""

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoveragePhaseData, FuzzingPhaseData
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from outbox.models import OutboxEvent
from selfos.wsgi import application
from tasks_app import services
from workers.models import Device, Notification

from .conftest import deliver
from .factories import (
    GoalFactory,
    MediaAttachmentFactory,
    ProjectFactory,
    TaskFactory,
    TokenFactory,
    UserFactory,
)

EXAMPLES_PER_OPERATION = 12
pytestmark = pytest.mark.django_db(transaction=True)
CASES_RUN = [0]  # reported in the run's summary (conftest)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
BOUNDED = hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
# `/api/<kind>/{id}/...`: the kind names which of the caller's objects the id is.
ON_ONE_OBJECT = re.compile(r"^/api/(?P<kind>[a-z]+)/\{id\}/")

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
schema_without_an_id = schema.exclude(path_regex=ON_ONE_OBJECT.pattern)
schema_on_one_object = schema.include(path_regex=ON_ONE_OBJECT.pattern)


@dataclass
class Seeded:
    """The caller's token header and the ids of the objects they own, by the path's kind."""

    header: dict[str, str]
    ids: dict[str, str]
    statuses: list[int] = field(default_factory=list)  # of the cases on the caller's own object


@pytest.fixture
def seeded(transactional_db: None) -> Seeded:
    user = UserFactory()
    goal = GoalFactory(owner=user, target_date=date(2030, 1, 1))
    project = ProjectFactory(owner=user, goal=goal)
    task = TaskFactory(owner=user, project=project)
    MediaAttachmentFactory(task=task)
    device = Device.objects.create(owner=user, token=f"seeded-device-of-{user.pk}", platform="android")
    done = TaskFactory(owner=user, project=project)
    MediaAttachmentFactory(task=done)
    services.complete_task(done, by=user)
    event = OutboxEvent.objects.get(aggregate_id=str(done.pk), type="task.completed")
    for subscriber in ("memory", "progress", "story", "notifications"):
        assert deliver(subscriber, event) == {"succeeded": 1}, subscriber
    notification = Notification.objects.get(owner=user)
    assert notification.receipts.get().device == device  # its push went out: `pushes` is not empty
    return Seeded(
        header={"Authorization": f"Token {TokenFactory(user=user).key}"},
        ids={
            "goals": str(goal.pk),
            "projects": str(project.pk),
            "tasks": str(task.pk),
            "devices": str(device.pk),
            "notifications": str(notification.pk),
        },
    )


@pytest.fixture
def reaches_the_object(request: pytest.FixtureRequest, seeded: Seeded) -> Iterator[Seeded]:
    """Fails the operation if no case reached the object: a 404 everywhere would pass unseen."""
    yield seeded
    assert any(200 <= status < 300 for status in seeded.statuses), (
        f"{request.node.name}: no case on the caller's own object succeeded: {sorted(set(seeded.statuses))}"
    )


def keeps_its_generated_id(case: schemathesis.Case) -> bool:
    """The cases about the id itself: coverage cases that vary it (missing, malformed), and about
    half the fuzzed ones, chosen by the generated id (so a failing case replays the same way)."""
    phase = case.meta.phase if case.meta else None
    if phase is None:
        return False
    if isinstance(phase.data, CoveragePhaseData):
        return phase.data.parameter == "id" and phase.data.parameter_location == ParameterLocation.PATH
    if isinstance(phase.data, FuzzingPhaseData):
        return zlib.crc32(str(case.path_parameters.get("id")).encode()) % 2 == 0
    return False


@schema_without_an_id.parametrize()
@BOUNDED
def test_every_operation_without_an_id_keeps_its_contract(case: schemathesis.Case, seeded: Seeded) -> None:
    CASES_RUN[0] += 1
    case.call_and_validate(headers=seeded.header, checks=CHECKS)


@schema_on_one_object.parametrize()
@BOUNDED
def test_every_operation_on_one_object_keeps_its_contract(
    case: schemathesis.Case, reaches_the_object: Seeded
) -> None:
    CASES_RUN[0] += 1
    match = ON_ONE_OBJECT.match(case.operation.path)
    assert match, case.operation.path
    on_own_object = not keeps_its_generated_id(case)
    if on_own_object:
        case.path_parameters = {**case.path_parameters, "id": reaches_the_object.ids[match["kind"]]}
    response = case.call_and_validate(headers=reaches_the_object.header, checks=CHECKS)
    if on_own_object:
        reaches_the_object.statuses.append(response.status_code)
