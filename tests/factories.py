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
