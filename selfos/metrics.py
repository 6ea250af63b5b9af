"""/metrics for Prometheus: django-prometheus's view, not public.

Allowed when the request carries `Authorization: Bearer $METRICS_TOKEN`, or comes
from an address in METRICS_ALLOWED_NETWORKS: loopback in local and test, empty in
production (behind a reverse proxy on the same host every request comes from loopback,
so there only the token opens it unless an operator lists networks on purpose).
Anything else gets a 403 JSON answer.
"""

import ipaddress
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import REGISTRY

from outbox.metrics import OutboxCollector

REGISTRY.register(OutboxCollector())


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
    return ExportToDjangoView(request)
