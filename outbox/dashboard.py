"""The outbox health page in the admin: counts, lag, an hour's throughput, dead deliveries to retry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from . import services
from .models import Delivery

CHART_WIDTH, CHART_HEIGHT, MINUTES = 600, 120, 60
LATEST_ERRORS = 3


def throughput_chart(now: Any) -> dict[str, Any]:
    """Deliveries that succeeded per minute over the last hour, as SVG bars (no JavaScript)."""
    start = (now - timedelta(minutes=MINUTES - 1)).replace(second=0, microsecond=0)
    per_minute = {
        row["minute"]: row["n"]
        for row in Delivery.objects.filter(status=Delivery.Status.SUCCEEDED, completed_at__gte=start)
        .annotate(minute=TruncMinute("completed_at"))
        .values("minute")
        .annotate(n=Count("id"))
    }
    counts = [per_minute.get(start + timedelta(minutes=i), 0) for i in range(MINUTES)]
    peak = max(counts) or 1
    width = CHART_WIDTH / MINUTES
    bars = [
        {
            "x": round(i * width, 1),
            "w": round(width - 1, 1),
            "h": round(n / peak * CHART_HEIGHT, 1),
            "n": n,
            "y": round(CHART_HEIGHT - n / peak * CHART_HEIGHT, 1),
            "at": (start + timedelta(minutes=i)).strftime("%H:%M"),
        }
        for i, n in enumerate(counts)
    ]
    return {"bars": bars, "peak": peak, "total": sum(counts), "width": CHART_WIDTH, "height": CHART_HEIGHT}


def dead_by_subscriber() -> list[dict[str, Any]]:
    groups = []
    for row in (
        Delivery.objects.filter(status=Delivery.Status.DEAD)
        .values("subscriber")
        .annotate(n=Count("id"))
        .order_by("subscriber")
    ):
        latest = Delivery.objects.filter(status=Delivery.Status.DEAD, subscriber=row["subscriber"]).order_by(
            "-id"
        )
        groups.append(
            {"subscriber": row["subscriber"], "count": row["n"], "latest": list(latest[:LATEST_ERRORS])}
        )
    return groups


def health_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm("outbox.change_delivery"):
            messages.error(request, "You may not retry deliveries.")
        else:
            delivery_id = request.POST.get("delivery", "")
            dead = services.dead_deliveries(
                subscriber=request.POST.get("subscriber") or None,
                ids=[int(delivery_id)] if delivery_id.isdigit() else [],
            )
            count = services.retry_deliveries(dead)
            messages.success(request, f"{count} dead deliveries re-dispatched.")
        return HttpResponseRedirect(reverse("admin:outbox_health"))
    now = timezone.now()
    status = services.status()
    context = {
        **admin.site.each_context(request),
        "title": "Outbox health",
        "status": status,
        # Summed from the per-subscriber counts: the same GROUP BY, not a second one.
        "delivery_counts": {
            name: sum(getattr(row, name) for row in status.subscribers)
            for name in ("dispatched", "pending", "succeeded", "dead")
        },
        "chart": throughput_chart(now),
        "dead": dead_by_subscriber(),
    }
    return TemplateResponse(request, "admin/outbox/health.html", context)
