from django.apps import AppConfig


class BacklogConfig(AppConfig):
    name = "bench.backlog"
    label = "bench_backlog"

    def ready(self) -> None:
        from . import subscribers  # noqa: F401  (registers them)
