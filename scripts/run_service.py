"""Start the whole service on this machine: migrate, make the demo user, then run the Procfile.

Called by `make run` through with_services.py, so DATABASE_URL and REDIS_URL are set.
Uses the local settings unless DJANGO_SETTINGS_MODULE says otherwise.
Ctrl-C stops every process gracefully (Celery's warm shutdown finishes the deliveries in
flight) before with_services.py stops the embedded servers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import honcho.command
import honcho.manager

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
# How long Ctrl-C waits for web, relay, workers and beat to stop by themselves.
SHUTDOWN_GRACE_SECONDS = float(os.environ.get("SELFOS_SHUTDOWN_GRACE_SECONDS", "30"))


def flower_auth() -> str:
    """Flower's basic auth: FLOWER_BASIC_AUTH, else a password made once and kept in var/."""
    if auth := os.environ.get("FLOWER_BASIC_AUTH"):
        return auth
    path = VAR / "flower-auth"
    VAR.mkdir(exist_ok=True)
    try:
        # Created owner-only in one step: a file written first and chmod-ed after is readable by
        # anyone in between. O_EXCL also never writes through a symlink planted at the path.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        pass  # made by an earlier run: keep its password
    else:
        with os.fdopen(fd, "w") as file:
            # The umask can only take bits away from 0o600; fchmod makes it exactly 0o600 even
            # under a umask that would leave the owner unable to read it back.
            os.fchmod(file.fileno(), 0o600)
            file.write(f"admin:{secrets.token_urlsafe(12)}\n")
    return path.read_text().strip()


def prometheus_multiprocess_dir() -> None:
    """Every process here writes its Prometheus histograms and counters to one directory, which
    the web's /metrics sums up; emptied at each start, as prometheus_client asks (the files
    of processes gone would otherwise add to the new ones' forever)."""
    path = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR / "prometheus")))
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def main() -> int:
    # The Procfile's processes (gunicorn, celery) inherit this: without it they would take the
    # production settings, which is what an unconfigured process should do, not `make run`.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.local")
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, check=True)
    subprocess.run([python, "manage.py", "ensure_demo_user"], cwd=ROOT, check=True)
    # The ONNX export is made (and checked) once here, not by several workers at once.
    subprocess.run([python, "manage.py", "memory", "prepare"], cwd=ROOT, check=True)
    os.environ["FLOWER_BASIC_AUTH"] = auth = flower_auth()
    prometheus_multiprocess_dir()
    port = os.environ.setdefault("PORT", "8000")
    flower_port = os.environ.setdefault("FLOWER_PORT", "5555")
    user = auth.split(":", 1)[0]
    print(
        f"""
selfos: starting web, relay, workers, beat and Flower (Ctrl-C stops them all)
  API            http://127.0.0.1:{port}/api/
  API docs       http://127.0.0.1:{port}/api/docs/
  admin          http://127.0.0.1:{port}/admin/
  health         http://127.0.0.1:{port}/healthz  http://127.0.0.1:{port}/readyz
  Flower         http://127.0.0.1:{flower_port}/  (user {user!r}; password in var/flower-auth)
""",
        flush=True,
    )
    os.chdir(ROOT)
    # honcho sends SIGTERM on Ctrl-C and SIGKILL KILL_WAIT seconds later (5 by default, not
    # an option): too soon for a worker's warm shutdown to finish a story written by an LLM.
    honcho.manager.KILL_WAIT = SHUTDOWN_GRACE_SECONDS
    honcho.command.main(["start", "--port", port])
    return 0


if __name__ == "__main__":
    sys.exit(main())
