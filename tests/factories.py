"""factory-boy factories for the domain."""

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory
from rest_framework.authtoken.models import Token

from tasks_app.models import Goal, MediaAttachment, Project, Task


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")


class TokenFactory(DjangoModelFactory):
    class Meta:
        model = Token

    user = factory.SubFactory(UserFactory)


class GoalFactory(DjangoModelFactory):
    class Meta:
        model = Goal

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Goal {n}")


class ProjectFactory(DjangoModelFactory):
    class Meta:
        model = Project

    owner = factory.SubFactory(UserFactory)
    goal = factory.SubFactory(GoalFactory, owner=factory.SelfAttribute("..owner"))
    title = factory.Sequence(lambda n: f"Project {n}")


class TaskFactory(DjangoModelFactory):
    class Meta:
        model = Task

    owner = factory.SubFactory(UserFactory)
    project = factory.SubFactory(ProjectFactory, owner=factory.SelfAttribute("..owner"))
    title = factory.Sequence(lambda n: f"Task {n}")
    description = "Write the thing down."


class MediaAttachmentFactory(DjangoModelFactory):
    class Meta:
        model = MediaAttachment

    task = factory.SubFactory(TaskFactory)
    kind = MediaAttachment.Kind.IMAGE
    url = factory.Sequence(lambda n: f"https://media.example/{n}.jpg")
    caption = factory.Sequence(lambda n: f"Caption {n}")


# Appended with the event log's factory (kept at the end so that edits above merge cleanly).
from django.utils import timezone  # noqa: E402


class EventLogFactory(DjangoModelFactory):
    """An event log row, written as the writer would (for the feed, export and pruning tests)."""

    class Meta:
        model = "outbox.EventLog"

    event_id = factory.Sequence(lambda n: 10_000_000 + n)
    committed_at = factory.LazyFunction(timezone.now)
    type = "task.completed"
    version = 1
    aggregate_type = "tasks_app.task"
    aggregate_id = factory.Faker("uuid4")
    owner_id = None
    payload = factory.LazyAttribute(lambda o: {"user_id": o.owner_id, "task_id": o.aggregate_id})
