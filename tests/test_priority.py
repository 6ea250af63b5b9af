"""WORKER_NICE (selfos/priority.py): a worker's CPU priority, set at its start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfos import priority

ROOT = Path(__file__).resolve().parent.parent
AUTOGROUP = Path("/proc/self/autogroup")  # the test run's session's


@pytest.mark.parametrize(("raw", "expected"), [("", None), (" ", None), ("-5", -5), ("7", 7), ("19", 19)])
def test_the_setting_is_read_from_the_environment(raw: str, expected: int | None) -> None:
    assert priority.nice_from_env(environ={"WORKER_NICE": raw}) == expected
    assert priority.nice_from_env(environ={}) is None
    assert priority.nice_from_env("SELFOS_DB_NICE", {"SELFOS_DB_NICE": raw}) == expected


@pytest.mark.parametrize("raw", ["fast", "-21", "20", "1.5"])
def test_a_bad_value_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        priority.nice_from_env(environ={"WORKER_NICE": raw})


def _in_a_session_of_its_own(code: str) -> str:
    """Run `code` in a fresh interpreter that leads a session of its own, as honcho and the bench
    start a worker; returns what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
        check=True,
    )
    return done.stdout


def test_a_worker_in_a_session_of_its_own_sets_its_nice_and_its_sessions() -> None:
    # A higher nice value (lower priority) needs no privilege: the test runs as any user.
    out = _in_a_session_of_its_own(
        "import os; from selfos import priority; "
        "print(priority.apply(7)); print(os.getpriority(os.PRIO_PROCESS, 0)); "
        "group = '/proc/self/autogroup'; "
        "print(open(group).read().strip() if os.path.exists(group) else 'no autogroup')"
    )
    applied, nice, autogroup = out.splitlines()
    assert (applied, nice) == ("True", "7")
    if autogroup != "no autogroup":
        assert autogroup.endswith("nice 7")


def test_a_worker_whose_session_a_shell_leads_sets_the_sessions_nice_too() -> None:
    """honcho's shape: `sh -c "VAR=... celery ..."` leads the session and forks the worker."""
    if not AUTOGROUP.exists():
        pytest.skip("no autogroup on this kernel")
    code = "from selfos import priority; print(priority.apply(4)); print(open('/proc/self/autogroup').read())"
    forks = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {code!r}])"
    out = _in_a_session_of_its_own(forks)
    applied, autogroup = out.strip().splitlines()
    assert applied == "True"
    assert autogroup.endswith("nice 4")


def test_a_worker_sharing_its_session_with_others_leaves_the_session_alone() -> None:
    """The autogroup would be the others' too (a terminal's other jobs, this test run): only the
    process's own nice is set."""
    if not AUTOGROUP.exists():
        pytest.skip("no autogroup on this kernel")
    before = AUTOGROUP.read_text()
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # in our session
    try:
        code = (
            "import os; from selfos import priority; "
            "print(priority.apply(5)); print(os.getpriority(os.PRIO_PROCESS, 0))"
        )
        argv = [sys.executable, "-c", code]
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.stdout.split() == ["True", "5"]
        assert AUTOGROUP.read_text() == before
    finally:
        sibling.kill()
        sibling.wait()


def test_without_the_right_to_raise_it_the_worker_logs_and_runs_as_it_is(monkeypatch, caplog) -> None:
    def refused(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "setpriority", refused)
    assert priority.apply(-5) is False
    assert "not permitted" in caplog.text


def test_a_celery_worker_refuses_to_start_with_a_bad_value() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "selfos", "worker", "-Q", "nothing-here", "-P", "solo"],
        cwd=ROOT,
        env={**os.environ, "WORKER_NICE": "fast", "DJANGO_SETTINGS_MODULE": "selfos.settings.test"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "WORKER_NICE" in done.stderr


def test_another_process_and_its_session_can_be_ranked() -> None:
    """As scripts/with_services.py ranks the embedded database's postmaster and its backends."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        assert priority.set_nice(child.pid, 6, session=True)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 6
        group = Path(f"/proc/{child.pid}/autogroup")
        if group.exists():
            assert group.read_text().strip().endswith("nice 6")
    finally:
        child.kill()
        child.wait()
