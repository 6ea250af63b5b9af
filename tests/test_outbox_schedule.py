"""The outbox brings its own periodic tasks and router; its defaults live in one place."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from celery import Celery

from outbox import conf, schedule
from selfos.celery import app

ROOT = Path(__file__).resolve().parent.parent


def test_the_project_app_has_the_outbox_entries_with_the_settings_intervals() -> None:
    beat = app.conf.beat_schedule
    # settings/test.py sets RELAY_INTERVAL 0.2 and SWEEP_INTERVAL 0.5: the schedule follows.
    assert beat["outbox-relay"]["schedule"] == timedelta(seconds=0.2)
    assert beat["outbox-sweep"]["schedule"] == timedelta(seconds=0.5)
    assert beat["outbox-retention"]["schedule"] == timedelta(seconds=conf.DEFAULTS["RETENTION_INTERVAL"])
    assert {beat[name]["options"]["queue"] for name in ("outbox-relay", "outbox-sweep")} == {"outbox"}
    assert schedule.ROUTER in app.conf.task_routes


def test_install_on_a_bare_app_adds_entries_and_one_router_and_keeps_the_hosts(settings) -> None:
    bare = Celery("bare", set_as_current=False)
    custom = {"task": "outbox.relay", "schedule": timedelta(seconds=9)}
    bare.conf.beat_schedule = {"outbox-relay": custom, "mine": {"task": "x", "schedule": 60}}
    bare.conf.task_routes = {"x": {"queue": "q"}}
    schedule.install(bare)
    schedule.install(bare)  # twice: still one router
    assert bare.conf.beat_schedule["outbox-relay"] == custom  # the host's own wins
    assert set(bare.conf.beat_schedule) == {
        "outbox-relay",
        "outbox-sweep",
        "outbox-retention",
        "outbox-eventlog-partitions",
        "mine",
    }
    assert bare.conf.task_routes == (schedule.ROUTER, {"x": {"queue": "q"}})


def read_setting(key: str, **environ: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    env |= {"DJANGO_SETTINGS_MODULE": "selfos.settings.local", **environ}
    code = f"import django; django.setup(); from outbox import conf; print(conf.get({key!r}))"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_outbox_settings_come_from_the_environment_over_the_apps_own_defaults() -> None:
    assert read_setting("LEASE_SECONDS") == str(conf.DEFAULTS["LEASE_SECONDS"])
    assert read_setting("LEASE_SECONDS", OUTBOX_LEASE_SECONDS="7") == "7"
    assert read_setting("TAKE_WAITING", OUTBOX_TAKE_WAITING="false") == "False"
