"""The outbox's numbers, counted in one place: the status command, the health page, the
metrics and the audit all read these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min
from django.utils import timezone

from .models import Delivery, OutboxEvent


@dataclass(frozen=True)
class PendingEvents:
    count: int
    oldest: datetime | None

    @property
    def oldest_age_seconds(self) -> float | None:
        return (timezone.now() - self.oldest).total_seconds() if self.oldest else None


def pending_events() -> PendingEvents:
    row = OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).aggregate(
        n=Count("id"), oldest=Min("created_at")
    )
    return PendingEvents(count=row["n"], oldest=row["oldest"])


def deliveries_by_subscriber_and_status() -> dict[tuple[str, str], int]:
    """{(subscriber, status): count}, one GROUP BY."""
    return {
        (row["subscriber"], row["status"]): row["n"]
        for row in Delivery.objects.order_by().values("subscriber", "status").annotate(n=Count("id"))
    }


def deliveries_by_status() -> dict[str, int]:
    totals: dict[str, int] = {}
    for (_, status), n in deliveries_by_subscriber_and_status().items():
        totals[status] = totals.get(status, 0) + n
    return totals
