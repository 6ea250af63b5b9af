"""/metrics for Prometheus, not public: django-prometheus's request metrics, the outbox's
gauges (read from its tables) and histograms (observed by the relay and workers).

With PROMETHEUS_MULTIPROC_DIR set (`make run` sets it), every process of this host writes
its histograms and counters there and one scrape sums them (prometheus_client's
multiprocess mode): the relay's and workers' histograms, and all the gunicorn workers'
request metrics, not just those of the one that answered.

Allowed when the request carries `Authorization: Bearer $METRICS_TOKEN`, or comes
from an address in METRICS_ALLOWED_NETWORKS: loopback in local and test, empty in
production (behind a reverse proxy on the same host every request comes from loopback,
so there only the token opens it unless an operator lists networks on purpose).
Anything else gets a 403 JSON answer.
"""

import ipaddress
import os
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from outbox.metrics import OutboxCollector

REGISTRY.register(OutboxCollector())


def registry() -> CollectorRegistry:
    """This process's registry, or with multiprocess mode one that reads every process's files
    (plus the outbox's gauges, which are read from the database and so are already whole)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    merged.register(OutboxCollector())
    return merged


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and secrets.compare_digest(header[7:], token):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n) for n in settings.METRICS_ALLOWED_NETWORKS)


def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return JsonResponse({"detail": "Metrics need a bearer token or an internal address."}, status=403)
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
