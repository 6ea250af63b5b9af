"""Relay a backlog with django-celery-outbox; print {"rows", "events", "seconds"} as JSON.

    python -m bench.celery_outbox --events N --tasks progress,story,...

Writes N x len(tasks) outbox rows (one Celery task per subscriber per event, the way
that library models an outbox), then times its own relay command (`celery_outbox_relay`,
stock options) from its first published row to an empty table. Run by the relay suite in
a process of its own, because the library's app must be installed and ours must not be.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.celery_outbox")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--tasks", required=True, help="comma-separated Celery task names")
    args = parser.parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.celery_outbox.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django_celery_outbox.models import CeleryOutbox

    from .app import app

    call_command("migrate", "django_celery_outbox", verbosity=0)
    CeleryOutbox.objects.all().delete()
    tasks = args.tasks.split(",")
    with transaction.atomic():
        for event_id in range(1, args.events + 1):
            for name in tasks:
                app.send_task(name, args=[[event_id]])
    rows = CeleryOutbox.objects.count()

    relay = subprocess.Popen(
        [sys.executable, "manage.py", "celery_outbox_relay"], env=os.environ, start_new_session=True
    )
    try:
        # From the first row gone to the last: the relay's start-up is not its throughput.
        while (left := CeleryOutbox.objects.count()) == rows:
            time.sleep(0.01)
        started, first = time.perf_counter(), rows - left
        while CeleryOutbox.objects.exists():
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        os.killpg(relay.pid, signal.SIGTERM)
        relay.wait(30)
    print(json.dumps({"rows": rows - first, "events": (rows - first) / len(tasks), "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
