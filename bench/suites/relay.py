"""The relay suite: events/s our relay fans out to the four subscribers from a pending
backlog (2,000 quick, 20,000 full), in this process.

Baselines, same run: one `apply_async` per (event, subscriber) through one producer, as a
one-message-per-delivery design would publish them; and django-celery-outbox 0.4.3
relaying the same four tasks per event with its own command (bench/celery_outbox/).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from celery import current_app
from django.utils import timezone

from outbox import registry, relay
from outbox.models import Delivery, OutboxEvent
from tasks_app.models import Task

from ..processes import ROOT, bench_env
from .common import Row, bench_user, flush_broker, reset


def make_backlog(n: int) -> None:
    """`n` pending task.completed events, written at once as a crashed relay would leave them."""
    user = bench_user()
    task = Task.objects.create(owner=user, title="backlog")
    now = timezone.now()
    OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                type="task.completed",
                aggregate_type="tasks_app.task",
                aggregate_id=str(task.pk),
                payload={"type": "task.completed", "version": 1, "task_id": str(task.pk), "user_id": user.pk},
                created_at=now,
            )
            for _ in range(n)
        ],
        batch_size=5000,
    )


def ours(n: int) -> tuple[float, int]:
    """Events/s through our relay, run until the backlog is gone; and the deliveries it made."""
    reset()
    make_backlog(n)
    started = time.perf_counter()
    while relay.relay(time_budget=3600):
        pass
    rate = n / (time.perf_counter() - started)
    assert not OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists()
    return rate, Delivery.objects.count()


def raw_apply_async(n: int) -> float:
    """Events/s when each (event, subscriber) is its own Celery message."""
    flush_broker()
    subs = registry.for_event("task.completed")
    started = time.perf_counter()
    with current_app.producer_or_acquire() as producer:
        for i in range(n):
            for sub in subs:
                sub.task.apply_async(args=[[i]], queue=sub.queue, producer=producer)
    rate = n / (time.perf_counter() - started)
    flush_broker()
    return rate


def django_celery_outbox(n: int) -> float:
    """Events/s through django-celery-outbox's own relay, in a process with its settings."""
    reset()
    names = [sub.task.name for sub in registry.for_event("task.completed")]
    result = subprocess.run(
        [sys.executable, "-m", "bench.celery_outbox", f"--events={n}", "--tasks=" + ",".join(names)],
        cwd=ROOT,
        env=bench_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    library = json.loads(result.stdout.splitlines()[-1])
    flush_broker()
    return library["events"] / library["seconds"]


def run(quick: bool) -> list[Row]:
    n = 2000 if quick else 20000
    subscribers = len(registry.for_event("task.completed"))
    rate, deliveries = ours(n)
    raw = raw_apply_async(n)
    dco = django_celery_outbox(n)
    return [
        Row(
            bench="relay",
            figure=f"events/s fanned out to {subscribers} subscribers ({n} backlog)",
            value=rate,
            unit="ev/s",
            baseline=raw,
            target=">= 2,000 ev/s, ahead of raw apply_async",
            met=rate >= 2000 and rate > raw,
        ),
        Row(
            bench="relay",
            figure=f"events/s vs django-celery-outbox 0.4.3 relaying {subscribers} tasks per event",
            value=rate,
            unit="ev/s",
            baseline=dco,
            target="ahead of django-celery-outbox",
            met=rate > dco,
        ),
        Row(bench="relay", figure="deliveries created", value=deliveries, unit=""),
    ]
