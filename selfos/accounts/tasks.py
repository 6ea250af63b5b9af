"""The accounts' periodic task: login records are kept only as long as the lockout reads them."""

from __future__ import annotations

import logging
from datetime import timedelta

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from celery import shared_task
from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)


@shared_task(name="selfos.accounts.prune_login_records")
def prune_login_records() -> dict[str, int]:
    """Delete successful logins older than the known-address window, and failures older than
    the cool-off: an address is personal data, kept no longer than the lockout needs it."""
    now = timezone.now()
    known_since = now - timedelta(days=settings.SELFOS_LOGIN_KNOWN_ADDRESS_DAYS)
    failed_since = now - settings.AXES_COOLOFF_TIME
    removed = {
        "access logs": AccessLog.objects.filter(attempt_time__lt=known_since).delete()[0],
        "access attempts": AccessAttempt.objects.filter(attempt_time__lt=failed_since).delete()[0],
        "failure logs": AccessFailureLog.objects.filter(attempt_time__lt=failed_since).delete()[0],
    }
    logger.info("accounts: login records pruned: %s", removed)
    return removed
