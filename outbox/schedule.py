"""The outbox's periodic tasks and task router, added to the host's Celery app by the outbox.

A host project adds `outbox` to INSTALLED_APPS and nothing more: when Django is set up
(in the web process, and in every Celery worker and beat before it schedules anything),
the app's `ready()` calls `install()`, which reads the intervals from `outbox.conf`, so
an `OUTBOX` setting changes the schedule too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery, current_app

from . import conf
from .eventlog import tasks as eventlog_tasks  # noqa: F401 - registers outbox.eventlog_partitions

ROUTER = "outbox.registry.route"


def beat_entries() -> dict[str, dict[str, Any]]:
    queue = conf.get("QUEUE")
    return {
        "outbox-relay": {
            "task": "outbox.relay",
            "schedule": timedelta(seconds=conf.get("RELAY_INTERVAL")),
            # A relay tick nobody ran in time is useless: the next one does the same work.
            "options": {"queue": queue, "expires": 10},
        },
        "outbox-sweep": {
            "task": "outbox.sweep",
            "schedule": timedelta(seconds=conf.get("SWEEP_INTERVAL")),
            "options": {"queue": queue, "expires": 30},
        },
        "outbox-retention": {
            "task": "outbox.retention",
            "schedule": timedelta(seconds=conf.get("RETENTION_INTERVAL")),
            "options": {"queue": queue, "expires": 600},
        },
        # Months ahead, so inserts find their month's partition (the migration makes the first).
        "outbox-eventlog-partitions": {
            "task": "outbox.eventlog_partitions",
            "schedule": timedelta(seconds=conf.get("EVENTLOG_PARTITIONS_INTERVAL")),
            "options": {"queue": queue, "expires": 3600},
        },
    }


def install(app: Celery | None = None) -> None:
    """Add the outbox's beat entries (the host's own entries of the same name win) and router."""
    app = app or current_app
    app.conf.beat_schedule = {**beat_entries(), **(app.conf.beat_schedule or {})}
    routes = app.conf.task_routes
    if routes is None:
        routes = ()
    elif isinstance(routes, dict | str):
        routes = (routes,)
    if ROUTER not in routes:
        app.conf.task_routes = (ROUTER, *routes)
