"""The embedding suite, in this process: texts/s embedded 64 per call, with the shipped
runtime (ONNX) and the reference (torch); and the memory subscriber's deliveries/s
(delivery wrapper, model, pgvector upsert) 100 per call.

Baselines, same run: one text (or one delivery) per call; and torch against ONNX.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.utils import timezone

from outbox.delivery import run_deliveries
from outbox.models import Delivery, OutboxEvent
from tasks_app import services
from tasks_app.models import Project, Task
from workers.memory import embedding

from .common import Row, bench_user, outbox_settings, reset

TEXTS = [
    f"Task {i}: write chapter {i % 37} of the novel, then {['run', 'cook', 'read'][i % 3]}"
    for i in range(256)
]


def best_of_3(run: Callable[[], object], count: int) -> float:
    """The best of three timed runs, as `count` per second: the others met a busy machine."""
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - started))
    return max(rates)


def encoder_rates(encoder: embedding.Encoder, n_single: int) -> tuple[float, float]:
    """(texts/s one per call, texts/s 64 per call) for one encoder."""
    encoder.encode(TEXTS, 64)  # warm both paths outside the timing
    single = best_of_3(lambda: [encoder.encode([t], 1) for t in TEXTS[:n_single]], n_single)
    batched = best_of_3(lambda: encoder.encode(TEXTS, 64), len(TEXTS))
    return single, batched


def embedding_throughput(quick: bool) -> list[Row]:
    """One text per call vs 64 per call, for the shipped runtime (ONNX) and the reference (torch)."""
    n_single = 32 if quick else 128
    onnx_single, onnx_batched = encoder_rates(embedding.load("onnx"), n_single)
    torch_single, torch_batched = encoder_rates(embedding.load("torch"), n_single)
    return [
        Row(
            bench="memory",
            figure="embeddings/s, batched (64 per call) vs one by one (ONNX Runtime, shipped)",
            value=onnx_batched,
            unit="texts/s",
            baseline=onnx_single,
            target=">= 5x",
            met=onnx_batched / onnx_single >= 5,
        ),
        Row(
            bench="memory",
            figure="embeddings/s, batched vs one by one (torch, the reference)",
            value=torch_batched,
            unit="texts/s",
            baseline=torch_single,
        ),
        Row(
            bench="memory",
            figure="embeddings/s one by one, ONNX Runtime vs torch",
            value=onnx_single,
            unit="texts/s",
            baseline=torch_single,
        ),
        Row(
            bench="memory",
            figure="embeddings/s batched, ONNX Runtime vs torch",
            value=onnx_batched,
            unit="texts/s",
            baseline=torch_batched,
        ),
    ]


def memory_subscriber_throughput(quick: bool) -> list[Row]:
    """The memory subscriber itself (delivery wrapper, model, pgvector upsert), in this
    process: deliveries handed over one per call, as when they trickle in, vs 100 per
    call, as a message carries them when they pile up."""
    n = 100 if quick else 400
    reset()
    user = bench_user()
    project = Project.objects.create(owner=user, title="memory bench")
    tasks = Task.objects.bulk_create(
        [
            Task(
                owner=user, project=project, title=f"Memory {i}: write chapter {i % 37}", description="draft"
            )
            for i in range(2 * n)
        ]
    )
    # No workers run here and the deliveries are made below by hand: a kick would only
    # queue relay runs that nobody takes.
    with outbox_settings(KICK=False):
        for task in tasks:
            services.complete_task(task, by=user)
    now = timezone.now()
    events = OutboxEvent.objects.filter(type="task.completed").order_by("id")
    ids = [
        d.id
        for d in Delivery.objects.bulk_create(
            [Delivery(event=e, subscriber="memory", dispatched_at=now, created_at=now) for e in events]
        )
    ]
    run_deliveries("memory", ids[:4])  # the model loaded, connections warm
    started = time.perf_counter()
    for delivery_id in ids[4:n]:
        run_deliveries("memory", [delivery_id])
    single = (n - 4) / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(n, 2 * n, 100):
        run_deliveries("memory", ids[i : i + 100])
    batched = n / (time.perf_counter() - started)
    assert not Delivery.objects.exclude(status=Delivery.Status.SUCCEEDED).exists()
    reset()
    return [
        Row(
            bench="memory",
            figure="memory subscriber deliveries/s, 100 per message vs one per message (in process)",
            value=batched,
            unit="/s",
            baseline=single,
        )
    ]


def run(quick: bool) -> list[Row]:
    return embedding_throughput(quick) + memory_subscriber_throughput(quick)
