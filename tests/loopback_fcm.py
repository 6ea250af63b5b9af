"""Points a `celery worker` process that a test starts at the loopback FCM (tests/fakes.py).

The in-process `fcm` fixture patches firebase-admin's FCM_URL and the push settings; a
worker process sees neither. The test passes them in the environment (`worker_env`), and
the worker applies them when it imports this module (through tests.subscribers, which
every test worker process includes). Without SELFOS_TEST_FCM_URL it does nothing.
"""

from __future__ import annotations

import os

from django.conf import settings

from .fakes import FakeFCM

URL_VAR = "SELFOS_TEST_FCM_URL"
CREDENTIALS_VAR = "SELFOS_TEST_FCM_CREDENTIALS_FILE"


def worker_env(fcm: FakeFCM) -> dict[str, str]:
    """The environment that makes a worker process push through the real firebase-admin to `fcm`."""
    return {URL_VAR: fcm.send_url_template, CREDENTIALS_VAR: str(fcm.credentials_file)}


def apply_from_env() -> None:
    url = os.environ.get(URL_VAR)
    if not url:
        return
    from firebase_admin import messaging

    messaging._MessagingService.FCM_URL = url
    settings.PUSH_BACKEND = "fcm"
    settings.FCM_CREDENTIALS_FILE = os.environ[CREDENTIALS_VAR]


apply_from_env()
