"""The Celery app: every setting comes from Django settings under CELERY_."""

import contextlib
import logging
import os
import signal
import sys
from typing import Any

from amqp.exceptions import AMQPError
from celery import Celery
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)
from kombu.exceptions import KombuError

from selfos.settings.broker import is_amqp

# Fail closed: a worker nobody configured gets production settings, which stop it when their
# secrets are missing. `make run` (scripts/run_service.py) and the tests choose local or test.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.production")
logger = logging.getLogger(__name__)


class SelfOSCelery(Celery):
    def send_task(
        self,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        countdown: Any = None,
        eta: Any = None,
        *rest: Any,
        **options: Any,
    ) -> Any:
        """Celery's send_task (every task message goes through it: apply_async, beat, a
        retry), with two changes for RabbitMQ.

        Every publish is bounded in time. With publisher confirms a publish waits for the
        broker's ack, and Celery passes no timeout of its own: a broker that blocks its
        publishers (a memory or disk alarm) would hang the caller for ever, a web request's
        relay kick included. `confirm_timeout` is one of send_task's publish options (Celery
        hands it to kombu's Producer.publish), so the default comes from
        broker_transport_options["confirm_timeout"] unless the caller gives one; on Redis it
        is unused. (This used to override Celery's private AMQP._create_task_sender.)

        A countdown under a second is made one second. On quorum queues a countdown goes
        through Celery's native delayed delivery, which builds its routing key from
        int(countdown) and refuses 0: the message a worker sends itself to retry 0.5 s after a
        database fault (outbox.message) would fail to be sent, "countdown must be a positive
        number", and its deliveries would wait for the sweeper.
        """
        if options.get("confirm_timeout") is None:
            options["confirm_timeout"] = (self.conf.broker_transport_options or {}).get("confirm_timeout")
        if countdown is not None and 0 < countdown < 1 and is_amqp(self.conf.broker_url):
            countdown = 1
        return super().send_task(name, args, kwargs, countdown, eta, *rest, **options)


app = SelfOSCelery("selfos")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _refuse_to_start_on_a_bad_setting(**kwargs: Any) -> None:
    """Run Django's system checks and stop on an error (Celery runs them but only logs them):
    a misspelled PUSH_BACKEND must stop the worker, not turn its first deliveries dead."""
    from django.core import checks

    errors = [m for m in checks.run_checks() if m.is_serious() and not m.is_silenced()]
    if errors:
        print("System check identified errors:", *errors, sep="\n  ", file=sys.stderr, flush=True)
        # Celery logs and swallows a signal handler's Exception; SystemExit it lets through.
        raise SystemExit(2)


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender: Any = None, state: str | None = None, **kwargs: Any) -> None:
    """Around each task, what Django does around each request: close the database
    connections that are past CONN_MAX_AGE or broken, and keep the others.

    Celery's Django fixup (5.7 here) closes every connection before and after every task,
    unless CELERY_DB_REUSE_MAX says to keep them for that many tasks, which the settings
    make unlimited. A new connection per task cost PostgreSQL a backend process and its
    set-up for every message: at 15 completions/s, 5 connections and 43 ms of the
    server's CPU per completion. With CONN_HEALTH_CHECKS, a kept connection that died
    meanwhile (a database restart) is replaced on first use. A task that did not succeed
    may have been cut off mid-query (why Celery went back to closing everything): its
    connections are closed whatever their age.
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import DatabaseError, close_old_connections, connections

    if state is not None and state != "SUCCESS":
        for conn in connections.all(initialized_only=True):
            with contextlib.suppress(DatabaseError):  # already broken: it is gone either way
                conn.close()
    else:
        close_old_connections()


@worker_process_init.connect
def _finish_the_task_on_sigterm(**kwargs: Any) -> None:
    """A pool process ignores SIGTERM; its worker's main process decides when it stops.

    Process managers (honcho, systemd's default KillMode, `docker stop`) send SIGTERM to
    the worker's whole process group. Celery resets SIGTERM to "die" in pool processes,
    so the task in flight would be cut off while the main process starts its warm
    shutdown. Ignored here, the task finishes, the main process then closes the pool, and
    a manager that loses patience still has SIGKILL (the delivery then goes back to
    dispatched: its transaction never committed).
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def declare_queues(celery: Celery) -> None:
    """On RabbitMQ, declare the default queue, the outbox's and every subscriber's.

    Called when a worker starts, whatever it consumes, before Celery binds the queues it
    knows to its delayed-delivery exchanges (which fails on a queue not yet declared): every
    queue then exists, as a quorum queue, before anything is published to it, and the
    sweeper's backlog check finds each one. Redis needs no declaring.
    """
    from outbox import conf, registry

    if not is_amqp(celery.conf.broker_url):
        return
    names = dict.fromkeys([celery.conf.task_default_queue, conf.get("QUEUE"), *registry.queues()])
    with celery.connection_for_write() as connection:
        # One try: a broker that is down is the consumer's to wait for, with its own retries.
        connection.ensure_connection(max_retries=1)
        channel = connection.default_channel
        for name in names:
            # Looked up by name, a queue Celery does not know yet is made with the configured
            # type (quorum) and exchange (topic), as a publish or a consumer would make it.
            celery.amqp.queues[name](channel).declare()


@worker_init.connect
def _set_cpu_priority(**kwargs: Any) -> None:
    """WORKER_NICE (selfos/priority.py): the relay and the express worker ahead of a burst."""
    from . import priority

    try:
        nice = priority.nice_from_env()
    except ValueError as exc:
        print(exc, file=sys.stderr, flush=True)
        raise SystemExit(2) from exc  # as above: Celery would log and swallow the ValueError
    if nice is not None:
        priority.apply(nice)


@worker_init.connect
def _declare_queues_at_start(**kwargs: Any) -> None:
    try:
        declare_queues(app)
    except (OSError, AMQPError, KombuError) as exc:
        # The worker's own connection retries until the broker answers; queues are then
        # declared as they are first used (a publish, a consumer).
        logger.warning("could not declare the queues at start: %s: %s", type(exc).__name__, exc)


@worker_ready.connect
def _serve_worker_metrics(**kwargs: Any) -> None:
    from . import worker_metrics

    worker_metrics.serve_from_env()


@worker_process_shutdown.connect
def _forget_this_process_live_gauges(pid: int | None = None, **kwargs: Any) -> None:
    """prometheus_client's multiprocess mode: a pool process that exits takes its live gauges
    with it (its counters and histograms stay in the sum, as they should)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
