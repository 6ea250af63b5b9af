"""Emptying the benchmark and chaos databases between runs."""

from django.db import connection

TABLES = (
    "outbox_deliveryattempt",
    "outbox_delivery",
    "outbox_outboxevent",
    "outbox_eventlog",
    "workers_progresssnapshot",
    "workers_storysegment",
    "workers_pushreceipt",
    "workers_notification",
    "workers_device",
    "workers_memoryentry",
    "tasks_app_mediaattachment",
    "tasks_app_task",
    "tasks_app_project",
    "tasks_app_goal",
    "authtoken_token",
    "axes_accessattempt",
    "axes_accesslog",
    "axes_accessfailurelog",
)


def truncate() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
