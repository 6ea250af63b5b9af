"""Forgetting under chaos: completed tasks and whole accounts deleted through the API mid-load,
and, once the outbox settled, every trace of them counted (there must be none).

While the completions go on, every `every` seconds the deleter takes its next step, in turn:
delete one task the chaos user completed (its deliveries may be queued, running or done), or
retire a doomed account: complete its tasks, wait a moment so that some of their deliveries
run, and `DELETE /api/me/`. Requests are retried through the faults as a phone would retry
them: a 503 or no answer is tried again; a 404 (task) or 401 (account) on a retry means an
earlier try went through and only its answer was lost. Every doomed account is retired
before the verdict, faults or not.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .traffic import Load, api_client

if TYPE_CHECKING:
    import httpx

PASSWORD = "chaos-doomed-account-password"  # noqa: S105 - test accounts on a run's own database
TASKS_PER_ACCOUNT = 2
PAUSE_BEFORE_ACCOUNT_DELETE = 1.0  # seconds: some of its deliveries run, others are in flight


@dataclass
class Doomed:
    """An account made to be deleted mid-load: one device, one project, a few open tasks."""

    user_id: int
    username: str
    token: str
    device_token: str
    task_ids: list[str]


@dataclass
class Forgotten:
    """What the deleter deleted, for the verdict to look for its traces."""

    tasks: set[str] = field(default_factory=set)  # the chaos user's deleted tasks
    accounts: list[Doomed] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)  # status code -> count, all requests
    errors: list[str] = field(default_factory=list)  # a delete the API would not take

    @property
    def account_task_ids(self) -> set[str]:
        return {t for a in self.accounts for t in a.task_ids}


def create_doomed_accounts(count: int) -> list[Doomed]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tasks_app.models import Project, Task
    from workers.models import Device

    # Those a run that stopped half-way left (the tables they filled are emptied before a run).
    get_user_model().objects.filter(username__startswith="chaos-doomed-").delete()
    made = []
    for i in range(count):
        user = get_user_model().objects.create_user(f"chaos-doomed-{i}", password=PASSWORD)
        token = Token.objects.create(user=user)
        device = Device.objects.create(owner=user, token=f"chaos-doomed-device-{i}", platform="android")
        project = Project.objects.create(owner=user, title=f"doomed project {i}")
        tasks = [
            Task.objects.create(owner=user, project=project, title=f"Doomed task {i}.{j}")
            for j in range(TASKS_PER_ACCOUNT)
        ]
        made.append(Doomed(user.pk, user.username, token.key, device.token, [str(t.pk) for t in tasks]))
    return made


class Deleter:
    def __init__(
        self, web_port: int, client: httpx.Client, load: Load, doomed: list[Doomed], every: float
    ) -> None:
        self.web_port = web_port
        self.client = client
        self.load = load
        self.doomed = list(doomed)
        self.every = every
        self.forgotten = Forgotten()

    def run(self, load_done: threading.Event) -> None:
        try:
            self._run(load_done)
        except RuntimeError as exc:  # reported in the verdict, which then fails
            self.forgotten.errors.append(str(exc))

    def _run(self, load_done: threading.Event) -> None:
        turn = 0
        while not load_done.wait(self.every):
            if turn % 2 == 0:
                self.delete_a_completed_task()
            elif self.doomed:
                self.retire(self.doomed.pop(0))
            turn += 1
        while self.doomed:  # the load ended first: these still go, so that every run has them
            self.retire(self.doomed.pop(0))

    def delete_a_completed_task(self) -> None:
        candidates = [t for t in self.load.completed_ids if t not in self.forgotten.tasks]
        if not candidates:
            return
        task_id = candidates[len(candidates) // 2]  # neither the newest nor the oldest
        self._until_done(self.client, "DELETE", f"/api/tasks/{task_id}/", gone=404)
        self.forgotten.tasks.add(task_id)

    def retire(self, account: Doomed) -> None:
        with api_client(self.web_port, account.token) as client:
            for task_id in account.task_ids:
                self._until_done(client, "PUT", f"/api/tasks/{task_id}/complete/")
            time.sleep(PAUSE_BEFORE_ACCOUNT_DELETE)
            self._until_done(client, "DELETE", "/api/me/", json={"password": PASSWORD}, gone=401)
        self.forgotten.accounts.append(account)

    def _until_done(
        self, client: httpx.Client, method: str, path: str, gone: int | None = None, **kwargs: Any
    ) -> None:
        """Send until the API takes it (2xx), or answers `gone` after a try whose answer was lost."""
        import httpx

        tried = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                status = client.request(method, path, **kwargs).status_code
            except httpx.HTTPError:
                status = 0
            key = str(status or "error")
            self.forgotten.answered[key] = self.forgotten.answered.get(key, 0) + 1
            if 200 <= status < 300 or (tried and status == gone):
                return
            if status not in (0, 502, 503, 504):
                raise RuntimeError(f"chaos: {method} {path} answered {status}")
            tried = True
            time.sleep(0.5)
        raise RuntimeError(f"chaos: {method} {path} was never taken")


def traces_left(forgotten: Forgotten) -> dict[str, int]:
    """Rows anywhere that still name a deleted task or account: each count must be 0."""
    from axes.models import AccessLog
    from django.db.models import Q

    from outbox.eventlog.models import EventLog
    from outbox.models import OutboxEvent
    from tasks_app.models import Goal, Project, Task
    from workers.models import Device, MemoryEntry, Notification, StorySegment

    tasks = forgotten.tasks | forgotten.account_task_ids
    users = [a.user_id for a in forgotten.accounts]
    recalls = Q()
    for task_id in tasks:
        recalls |= Q(recalled__contains=[{"task": task_id}])
    owned = Q(owner_id__in=users)
    return {
        "story segments about or recalling them": StorySegment.objects.filter(
            Q(subject_id__in=tasks) | recalls if tasks else Q(pk__in=[])
        ).count(),
        "memory rows": MemoryEntry.objects.filter(task_id__in=tasks).count(),
        "notifications": Notification.objects.filter(data__task_id__in=list(tasks)).count(),
        "event log rows": EventLog.objects.filter(
            Q(aggregate_type="tasks_app.task", aggregate_id__in=tasks) & ~Q(type="task.deleted")
        ).count(),
        "rows of deleted accounts": sum(
            model.objects.filter(owned).count()
            for model in (Task, Project, Goal, Device, Notification, StorySegment, MemoryEntry)
        )
        + EventLog.objects.filter(owner_id__in=users).count()
        + OutboxEvent.objects.filter(payload__user_id__in=users).count()
        + AccessLog.objects.filter(username__in=[a.username for a in forgotten.accounts]).count(),
    }
