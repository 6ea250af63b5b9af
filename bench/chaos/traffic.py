"""The completions a phone would send: the chaos user's tasks, and the paced load through the API."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from tasks_app.models import Task

DEVICES_PER_USER = 2
PROJECTS = 20


@dataclass
class Load:
    answered: dict[str, int] = field(default_factory=lambda: {"200": 0, "503": 0, "error": 0})
    ok_at: list[float] = field(default_factory=list)
    completed_ids: list[str] = field(default_factory=list)  # in the order the API took them


def create_tasks(count: int) -> tuple[str, list[Task]]:
    """The chaos user, its devices and `count` open tasks; returns its API token and the tasks."""
    # Django is set up by the caller, after the environment is ready: import models only now.
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tasks_app.models import Project, Task
    from workers.models import Device

    user, _ = get_user_model().objects.get_or_create(username="chaos")
    token, _ = Token.objects.get_or_create(user=user)
    for i in range(DEVICES_PER_USER):
        platform = Device.Platform.ANDROID if i % 2 == 0 else Device.Platform.IOS
        Device.objects.create(owner=user, token=f"chaos-device-{i}", platform=platform)
    projects = [Project.objects.create(owner=user, title=f"chaos project {i}") for i in range(PROJECTS)]
    tasks = [
        Task.objects.create(
            owner=user, project=projects[i % PROJECTS], title=f"Chaos task {i}: chapter {i % 41}"
        )
        for i in range(count)
    ]
    return token.key, tasks


def api_client(web_port: int, token: str, host: str = "127.0.0.1") -> httpx.Client:
    """A phone's client of the API at `host` (the cluster's web hosts are not on loopback)."""
    import httpx

    return httpx.Client(
        base_url=f"http://{host}:{web_port}", timeout=10, headers={"Authorization": f"Token {token}"}
    )


def answers(client: Any) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except Exception:  # noqa: BLE001 - not up yet
        return False


def send_completions(client: httpx.Client, tasks: list[Task], rate: float, load: Load | None = None) -> Load:
    """Complete every task through the API at `rate` a second, retrying refusals until each is
    taken; into `load` as it goes (others read it meanwhile), a new one by default."""
    import httpx

    load = load if load is not None else Load()
    started = time.monotonic()
    pending = list(tasks)
    while pending:
        task = pending.pop(0)
        try:
            status: int | str = client.put(f"/api/tasks/{task.pk}/complete/").status_code
        except httpx.HTTPError:
            status = "error"
        load.answered[str(status) if status in (200, 503) else "error"] += 1
        if status == 200:
            load.ok_at.append(time.time())
            load.completed_ids.append(str(task.pk))
        else:
            pending.append(task)  # the app retries later, as a phone would
            time.sleep(0.5)
        pause = started + (len(tasks) - len(pending)) / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return load
