"""The Celery app: every setting comes from Django settings under CELERY_."""

import os
import signal
import sys
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

# Fail closed: a worker nobody configured gets production settings, which stop it when their
# secrets are missing. `make run` (scripts/run_service.py) and the tests choose local or test.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.production")

app = Celery("selfos")
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
