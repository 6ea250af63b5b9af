"""The local settings plus django-celery-outbox, with its metrics and info logs off (ours
emit neither per message either), so the comparison is of the relays, not of logging."""

import logging

import structlog

from selfos.settings.local import *  # noqa: F403
from selfos.settings.local import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_celery_outbox"]
CELERY_OUTBOX_APP = "bench.celery_outbox.app.app"
MONITORING_METRICS_ENABLED = False
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
