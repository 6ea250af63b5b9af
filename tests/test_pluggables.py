"""Pluggable parts by short name or dotted path, and a typo caught at start, not at the first delivery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers import pluggables
from workers.memory.stores import PgVectorStore
from workers.notifications import push
from workers.story import writers

ROOT = Path(__file__).resolve().parent.parent


def test_short_names_and_dotted_paths_name_the_same_parts(settings) -> None:
    settings.PUSH_BACKEND = "workers.notifications.push.LocmemBackend"
    assert isinstance(push.get_backend(), push.LocmemBackend)
    settings.STORY_WRITER = "template"
    writers.get_writer.cache_clear()
    assert isinstance(writers.get_writer(), writers.TemplateWriter)
    settings.MEMORY_STORE = "workers.memory.stores.PgVectorStore"
    assert isinstance(pluggables.build("MEMORY_STORE"), PgVectorStore)


def test_the_system_check_passes_on_the_shipped_settings() -> None:
    assert pluggables.check_pluggables() == []


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("PUSH_BACKEND", "fmc", "unknown PUSH_BACKEND 'fmc' (one of console, locmem, fcm, or a dotted path)"),
        ("STORY_WRITER", "workers.story.Nope", "STORY_WRITER 'workers.story.Nope' cannot be imported"),
        ("MEMORY_STORE", "weaviat", "unknown MEMORY_STORE 'weaviat'"),
        ("MEMORY_EMBEDDING_RUNTIME", "tensorflow", "unknown MEMORY_EMBEDDING_RUNTIME 'tensorflow'"),
    ],
)
def test_a_misspelled_part_is_a_system_check_error(settings, setting: str, value: str, message: str) -> None:
    setattr(settings, setting, value)
    errors = pluggables.check_pluggables()
    assert [e.msg[: len(message)] for e in errors] == [message]
    assert errors[0].id.startswith("workers.E")


def test_manage_py_check_fails_before_anything_runs() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "selfos.settings.local", "PUSH_BACKEND": "fmc"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "workers.E001" in result.stderr
    assert "unknown PUSH_BACKEND 'fmc'" in result.stderr


def test_a_worker_refuses_to_start_on_a_misspelled_part() -> None:
    """Celery runs Django's checks but only logs them; ours stops the worker instead."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "selfos.settings.local", "STORY_WRITER": "opneai"}
    worker = [sys.executable, "-m", "celery", "-A", "selfos", "worker", "-Q", "nothing", "-P", "solo"]
    result = subprocess.run(
        [*worker, "--without-mingle", "--without-gossip"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "unknown STORY_WRITER 'opneai'" in result.stderr
