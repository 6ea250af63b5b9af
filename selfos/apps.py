from django.apps import AppConfig


class SelfOSConfig(AppConfig):
    """The project itself as an app: what every process sets up once Django is ready."""

    name = "selfos"
    verbose_name = "SelfOS"

    def ready(self) -> None:
        from . import tracing

        tracing.configure()
