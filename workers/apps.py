"""The subscribers: one module each, registered with the outbox when the app loads."""

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Subscribers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing a subscriber module registers it (and its Celery task) with the outbox;
        # importing pluggables registers the system check on the push backend, story
        # writer, vector store and embedding runtime settings; warm, the express workers'
        # model loading at start.
        from . import audit, pluggables, warm  # noqa: F401
        from .memory import handler as memory  # noqa: F401
        from .notifications import handler as notifications  # noqa: F401
        from .progress import handler as progress  # noqa: F401
        from .story import handler as story  # noqa: F401
