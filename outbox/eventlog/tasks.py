"""The event log's periodic task: make monthly partitions ahead (scheduled by outbox/schedule.py)."""

from celery import shared_task

from . import partitions


@shared_task(name="outbox.eventlog_partitions", ignore_result=True)
def make_partitions() -> list[str]:
    return partitions.ensure()
