"""The subscribers: one module each, registered with the outbox when the app loads."""

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Subscribers"
    default_auto_field = "django.db.models.BigAutoField"
