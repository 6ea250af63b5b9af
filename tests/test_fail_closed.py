"""Fail closed (issue 14, item 5): what an unconfigured or half-configured deployment does.

- manage.py, the WSGI app and the Celery app take the production settings when nobody chose,
  and stop on the missing secret; every local entry point (the Makefile's targets,
  scripts/run_service.py) chooses local or test itself.
- `manage.py check --deploy` under production settings reports nothing, and each knob that
  loosens it is read from the environment (turning them off brings their warnings back).
- /metrics in production needs the token, even from loopback (where a local proxy's requests
  come from); local and test keep the loopback allow-list.
- The admin's bulk actions need the change permission (tests/test_admin_permissions.py).
- Flower's password file is owner-only from the moment it exists.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import run_service  # noqa: E402

PRODUCTION = "selfos.settings.production"
SHOW_SETTINGS = (
    "from django.conf import settings; "
    "print(json.dumps([settings.SETTINGS_MODULE, settings.DEBUG, settings.METRICS_ALLOWED_NETWORKS]))"
)


def bare_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that configures Django or make, plus `extra`."""
    dropped = ("DJANGO_", "METRICS_", "MAKE", "MFLAGS", "PYTEST_ARGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    # Realistic, unreachable addresses: nothing here connects, but production needs them set.
    env |= {
        "DATABASE_URL": "postgres://selfos:db-password@db:5432/selfos",
        "REDIS_URL": "redis://redis:6379/0",
    }
    return env | extra


def production_env(**extra: str) -> dict[str, str]:
    """What a real deployment sets: a long random key, its host name, and the proxy's origin."""
    deployment = {
        "DJANGO_SETTINGS_MODULE": PRODUCTION,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "selfos.example.com",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://selfos.example.com",
        "METRICS_TOKEN": secrets.token_urlsafe(32),
    }
    return bare_env(**(deployment | extra))


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


# --- Entry points default to production --------------------------------------------------

ENTRY_POINTS = {
    "manage.py": [sys.executable, "manage.py", "shell", "-c", f"import json; {SHOW_SETTINGS}"],
    "wsgi": [sys.executable, "-c", f"import json, selfos.wsgi; {SHOW_SETTINGS}"],
    "celery": [
        sys.executable,
        "-c",
        f"import json; from selfos.celery import app; app.loader.import_default_modules(); {SHOW_SETTINGS}",
    ],
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unconfigured_process_stops_on_the_missing_production_secret(entry: str) -> None:
    result = run(ENTRY_POINTS[entry], bare_env())
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured: Set the DJANGO_SECRET_KEY environment variable" in result.stderr
    if entry == "manage.py":  # and says why production settings were chosen
        assert "DJANGO_SETTINGS_MODULE is not set" in result.stderr


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unconfigured_process_runs_with_production_settings(entry: str) -> None:
    result = run(ENTRY_POINTS[entry], bare_env(DJANGO_SECRET_KEY=secrets.token_urlsafe(50)))
    assert result.returncode == 0, result.stderr
    module, debug, _ = json.loads(result.stdout.strip().splitlines()[-1])
    assert (module, debug) == (PRODUCTION, False)


# --- Local entry points choose their settings ------------------------------------------------

LOCAL_TARGETS = ["run", "demo", "bench", "chaos", "migrate", "shell"]


def make(target: str, tmp_path: Path, **env: str) -> str:
    """Run a Makefile target with its commands replaced by one that prints the settings it gets."""
    printer = tmp_path / "printer.py"
    printer.write_text("import os\nprint(os.environ.get('DJANGO_SETTINGS_MODULE'))\n")
    result = run(
        [
            "make",
            "--no-print-directory",
            # Never (re)install the virtualenv or the bench extras for this.
            *("-o", ".venv/.installed", "-o", ".venv/.bench-installed"),
            target,
            "SERVICES=",
            f"PY={sys.executable} {printer}",
        ],
        bare_env(**env),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("target", LOCAL_TARGETS)
def test_make_targets_run_with_the_local_settings(target: str, tmp_path: Path) -> None:
    assert make(target, tmp_path) == "selfos.settings.local"


def test_make_test_always_uses_the_test_settings(tmp_path: Path) -> None:
    assert make("test", tmp_path) == "selfos.settings.test"
    assert make("test", tmp_path, DJANGO_SETTINGS_MODULE=PRODUCTION) == "selfos.settings.test"


def test_a_settings_module_chosen_in_the_environment_wins_for_make_run(tmp_path: Path) -> None:
    assert make("run", tmp_path, DJANGO_SETTINGS_MODULE=PRODUCTION) == PRODUCTION


def test_run_service_gives_its_processes_the_local_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []

    def record(what: str) -> Any:
        return lambda args, *a, **k: seen.append((what, os.environ.get("DJANGO_SETTINGS_MODULE")))

    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")  # restored after the test
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:pw")
    monkeypatch.setenv("PORT", "8000")
    monkeypatch.setenv("FLOWER_PORT", "5555")
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(run_service.subprocess, "run", record("manage.py"))
    monkeypatch.setattr(run_service.honcho.command, "main", record("honcho"))
    monkeypatch.setattr(run_service.honcho.manager, "KILL_WAIT", run_service.honcho.manager.KILL_WAIT)
    assert run_service.main() == 0
    assert seen == [("manage.py", "selfos.settings.local")] * 3 + [("honcho", "selfos.settings.local")]


# --- check --deploy ------------------------------------------------------------------------------


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)


def test_check_deploy_reports_nothing_under_production_settings() -> None:
    result = check_deploy(production_env())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr.upper()


def test_each_deploy_setting_comes_from_the_environment() -> None:
    loosened = production_env(
        DJANGO_SECRET_KEY="short",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_HSTS_SECONDS="0",
        DJANGO_SECURE_COOKIES="false",
    )
    result = check_deploy(loosened)
    assert result.returncode != 0
    for warning in ("W004", "W008", "W009", "W012", "W016"):
        assert f"security.{warning}" in result.stderr, warning
    hsts = check_deploy(
        production_env(DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="false", DJANGO_SECURE_HSTS_PRELOAD="false")
    )
    assert "security.W005" in hsts.stderr and "security.W021" in hsts.stderr


PROBE = """
import json, django
django.setup()
from django.test import Client
from django.conf import settings

c = Client(HTTP_HOST="selfos.example.com")
answers = {
    "api over http": c.get("/api/tasks/"),
    "healthz over http": c.get("/healthz"),
    "healthz over https": c.get("/healthz", headers={"x-forwarded-proto": "https"}),
    "metrics from loopback": c.get("/metrics", REMOTE_ADDR="127.0.0.1"),
}
print(json.dumps({
    "networks": settings.METRICS_ALLOWED_NETWORKS,
    **{name: [r.status_code, r.headers.get("Location"), r.headers.get("Strict-Transport-Security")]
       for name, r in answers.items()},
}))
"""


def probe(**env: str) -> dict[str, Any]:
    result = run([sys.executable, "-c", PROBE], production_env(**env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_redirects_to_https_sends_hsts_and_exempts_the_probes() -> None:
    answers = probe()
    assert answers["api over http"][:2] == [301, "https://selfos.example.com/api/tasks/"]
    assert answers["healthz over http"][:2] == [200, None]  # a probe inside the network, plain HTTP
    assert answers["healthz over https"] == [200, None, "max-age=31536000; includeSubDomains; preload"]


# --- /metrics ----------------------------------------------------------------------------------------


def test_production_metrics_need_the_token_even_from_loopback() -> None:
    answers = probe()
    assert answers["networks"] == []
    assert answers["metrics from loopback"][0] == 403  # a local reverse proxy's requests look like this
    # An allow-list set on purpose is honoured.
    assert probe(METRICS_ALLOWED_NETWORKS="10.0.0.0/8")["networks"] == ["10.0.0.0/8"]


def test_local_settings_keep_the_loopback_allow_list() -> None:
    result = run(
        [sys.executable, "-c", f"import json, django; django.setup(); {SHOW_SETTINGS}"],
        bare_env(DJANGO_SETTINGS_MODULE="selfos.settings.local"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])[2] == ["127.0.0.1/32", "::1/128"]


@pytest.mark.django_db
def test_with_an_empty_allow_list_only_the_token_opens_metrics(client: Client, settings) -> None:
    settings.METRICS_ALLOWED_NETWORKS = []  # production's default
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    auth = {"HTTP_AUTHORIZATION": "Bearer scrape-token"}
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", **auth).status_code == 200


# --- Flower's password file ----------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_the_flower_password_file_is_owner_only_from_its_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    var = tmp_path / "var"
    monkeypatch.setattr(run_service, "VAR", var)
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)

    def no_chmod_after_the_fact(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("chmod after creation: the file was readable by others until then")

    monkeypatch.setattr(Path, "chmod", no_chmod_after_the_fact)
    monkeypatch.setattr(os, "chmod", no_chmod_after_the_fact)
    previous = os.umask(umask)  # 0: a widening umask; 0o277: one that would lock out the owner
    try:
        auth = run_service.flower_auth()
    finally:
        os.umask(previous)
    path = var / "flower-auth"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    user, password = auth.split(":", 1)
    assert user == "admin" and len(password) >= 16
    assert run_service.flower_auth() == auth  # made once, then kept
