"""OpenTelemetry tracing: off unless SELFOS_TRACING is on, which it is by default when
OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set.

On, every process (web, relay, workers, beat) exports its spans over OTLP/HTTP to that
endpoint, in batches from a background thread: the request (Django), each Celery task
(publish and run, with the context in the message headers), every query (psycopg), and
the outbox's own spans, which follow each event across its row (outbox/telemetry.py). The
exporter and the batches take the standard OTEL_* variables (OTEL_SERVICE_NAME,
OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_SCHEDULE_DELAY, OTEL_TRACES_SAMPLER...).

Off, nothing here is imported: no SDK, no instrumentation, no exporter thread. The outbox
then finds no valid span to store and records none.
"""

from __future__ import annotations

import logging
import os

from django.conf import settings

logger = logging.getLogger(__name__)
_configured = False


def configure() -> bool:
    """Install the SDK and the instrumentations once per process, if tracing is on."""
    global _configured
    if _configured or not settings.SELFOS_TRACING:
        return _configured
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, but what it is
    # given wins over them: "selfos" only when neither names the service.
    named = "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    default = {} if os.environ.get("OTEL_SERVICE_NAME") or named else {"service.name": "selfos"}
    provider = TracerProvider(resource=Resource.create(default))
    # The batch processor restarts its export thread in each forked child (Celery's prefork
    # pool, gunicorn), so configuring before the fork is enough.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()
    CeleryInstrumentor().instrument()
    # No sqlcommenter: it would make every statement text unique and defeat statement caches.
    PsycopgInstrumentor().instrument(enable_commenter=False, skip_dep_check=True)
    _configured = True
    logger.info("tracing: on, spans exported over OTLP/HTTP")
    return True
