"""The outbox app: a reusable transactional outbox that imports nothing else of ours."""

from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import schedule, tasks  # noqa: F401 - tasks registers the periodic tasks' names

        schedule.install()
