"""The domain's audit check: a completed task and its task.completed event come together."""

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone

from outbox import conf
from outbox.audit import register_check
from outbox.models import OutboxEvent

from . import events
from .models import Task


@register_check("every completed task has exactly one task.completed event for its completion")
def completed_tasks_have_their_event() -> Iterator[str]:
    # Retention deletes old events: only completions well inside its window are checked.
    since = timezone.now() - timedelta(days=conf.get("RETENTION_DAYS")) + timedelta(hours=1)
    per_completion = Counter(
        OutboxEvent.objects.filter(type=events.TASK_COMPLETED, created_at__gte=since - timedelta(minutes=5))
        .values_list("aggregate_id", "payload__completed_at")
        .iterator(chunk_size=5000)
    )
    completed = Task.objects.filter(status=Task.Status.COMPLETED, completed_at__gte=since)
    for pk, completed_at in completed.values_list("pk", "completed_at").iterator(chunk_size=5000):
        count = per_completion[(str(pk), completed_at.isoformat())]
        if count != 1:
            yield f"task {pk} completed at {completed_at.isoformat()} has {count} task.completed events"
