"""Failed-login lockouts that no stranger can aim: django-axes' database handler, with three limits.

django-axes counts failures per lockout parameter and compares every count with one limit.
Here each kind of count has a limit of its own (settings, README "Security"):

- the pair (username, address), `AXES_FAILURE_LIMIT` (10): password guessing from one place.
  This is the lockout axes keeps, and what a successful login resets;
- the address, for any username, `SELFOS_LOGIN_ADDRESS_FAILURE_LIMIT` (100): spraying many
  usernames from one place. Much higher, so that one stranger behind a shared address (a
  carrier's NAT, an office proxy) does not lock out everyone else there;
- the username, from every address, `SELFOS_LOGIN_USERNAME_FAILURE_LIMIT` (50): guessing one
  account from many places. It never applies at an address where that user logged in before
  (within `SELFOS_LOGIN_KNOWN_ADDRESS_DAYS`), so strangers elsewhere cannot lock a known
  user out of the places they log in from.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_failure_limit
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.db.models import QuerySet, Sum
from django.http import HttpRequest
from django.utils import timezone


class LoginLockoutHandler(AxesDatabaseHandler):
    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """The pair's failures; the pair's limit itself when a wider limit was reached.

        axes locks out when this reaches `AXES_FAILURE_LIMIT`, before authenticating (the right
        password does not help meanwhile) and after each failure.
        """
        username = get_client_username(request, credentials)
        address = request.axes_ip_address  # type: ignore[attr-defined]
        recent = AccessAttempt.objects.filter(attempt_time__gte=get_cool_off_threshold(request))
        pair = _failures(recent.filter(username=username, ip_address=address))
        locked = get_failure_limit(request, credentials)
        if _failures(recent.filter(ip_address=address)) >= settings.SELFOS_LOGIN_ADDRESS_FAILURE_LIMIT:
            return max(pair, locked)
        if (
            username
            and _failures(recent.filter(username=username)) >= settings.SELFOS_LOGIN_USERNAME_FAILURE_LIMIT
            and not _known_address(username, address)
        ):
            return max(pair, locked)
        return pair


def _failures(attempts: QuerySet[AccessAttempt]) -> int:
    return attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0


def _known_address(username: str, address: str | None) -> bool:
    """This user logged in successfully from this address recently (axes' access log)."""
    since = timezone.now() - timedelta(days=settings.SELFOS_LOGIN_KNOWN_ADDRESS_DAYS)
    return AccessLog.objects.filter(username=username, ip_address=address, attempt_time__gte=since).exists()
