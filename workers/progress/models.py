"""Progress's model: a snapshot of a project's figures as of one event."""

from django.db import models


class ProgressSnapshot(models.Model):
    """The figures of one project after one event: the history `GET .../progress/` shows."""

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey("tasks_app.Project", on_delete=models.CASCADE, related_name="snapshots")
    event_id = models.BigIntegerField(help_text="The outbox event this snapshot answers.")
    percent = models.DecimalField(max_digits=5, decimal_places=2)
    tasks_done = models.PositiveIntegerField()
    tasks_total = models.PositiveIntegerField()
    goal_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    streak_days = models.PositiveIntegerField()
    pace_per_week = models.DecimalField(max_digits=8, decimal_places=2)
    estimated_finish = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "event_id"], name="snapshot_once_per_event")
        ]

    def __str__(self) -> str:
        return f"{self.project_id}: {self.percent}% after event {self.event_id}"
