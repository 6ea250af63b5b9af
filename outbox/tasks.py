"""The outbox's periodic Celery tasks: relay, sweeper, retention (scheduled by beat)."""

from celery import shared_task

from . import relay as relay_module
from . import retention, sweeper
from .publish import kick_received


@shared_task(name="outbox.relay", ignore_result=True)
def relay() -> int:
    relay_module.space_out()  # under load, let a few milliseconds of commits gather first
    kick_received()
    return relay_module.relay()


@shared_task(name="outbox.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    return sweeper.sweep()


@shared_task(name="outbox.retention", ignore_result=True)
def retention_task() -> int:
    return retention.purge()
