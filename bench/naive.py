"""The seed's write path, as a baseline: update, commit, then publish to the broker inline.

The same DRF viewset as the product's (same auth, lookup and serializer), with only
`complete` replaced: save the task (autocommit), then one Celery message per
subscriber, published inside the request. What the seed's `await publish()` after
`db.commit()` becomes with Celery; it loses the event if the process dies between
the two. Here only to be measured against.
"""

from __future__ import annotations

from django.utils import timezone
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from outbox import registry
from tasks_app.events import task_payload
from tasks_app.models import Task
from tasks_app.views import TaskViewSet


class NaiveTaskViewSet(TaskViewSet):
    @action(detail=True, methods=["put", "post"])
    def complete(self, request: Request, pk: str | None = None) -> Response:
        task: Task = self.get_object()
        if not task.is_completed:
            task.status, task.completed_at = Task.Status.COMPLETED, timezone.now()
            task.save(update_fields=["status", "completed_at", "updated_at"])  # committed here
            payload = task_payload(task)
            for sub in registry.for_event("task.completed"):
                sub.task.apply_async(args=[[0]], queue=sub.queue, headers={"payload": payload})
        return Response(self.get_serializer(task).data)
