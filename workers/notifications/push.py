"""Push backends, chosen by PUSH_BACKEND as Django chooses an e-mail backend.

- `console` (default for `make run`): logs each push.
- `locmem` (tests): keeps pushes in `workers.push.sent`.
- `fcm`: Firebase Cloud Messaging through firebase-admin (`messaging.send_each`,
  up to 500 messages a call), with the service account in FCM_CREDENTIALS_FILE.

A backend answers one result per message: sent, invalid token (the device is
deactivated), retry (quota, unavailable, internal: the outbox retries later) or failed.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any, Protocol

from django.conf import settings

from outbox.api import PermanentError

logger = logging.getLogger(__name__)

FCM_BATCH_LIMIT = 500


@dataclass(frozen=True)
class PushMessage:
    token: str
    title: str
    body: str
    # The notification's id: devices replace rather than stack a repeated push.
    collapse_id: str
    data: dict[str, str] = field(default_factory=dict)


class Outcome(StrEnum):
    SENT = "sent"
    INVALID_TOKEN = "invalid"  # noqa: S105 - an outcome, not a secret
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class PushResult:
    outcome: Outcome
    message_id: str = ""
    error: str = ""


class PushBackend(Protocol):
    def send(self, messages: list[PushMessage]) -> list[PushResult]: ...


class ConsoleBackend:
    _ids = itertools.count(1)

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        results = []
        for m in messages:
            logger.info("push (console) to %s…: %s — %s", m.token[:12], m.title, m.body)
            results.append(PushResult(Outcome.SENT, message_id=f"console-{next(self._ids)}"))
        return results


sent: list[PushMessage] = []


class LocmemBackend:
    """Keeps what it sends in `workers.push.sent`, like Django's locmem e-mail backend."""

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        sent.extend(messages)
        return [PushResult(Outcome.SENT, message_id=f"locmem-{len(sent)}") for _ in messages]


class FCMBackend:
    def __init__(self, credentials_file: str, project_id: str = "") -> None:
        self.app = _firebase_app(credentials_file, project_id)

    @classmethod
    def from_settings(cls) -> FCMBackend:
        return cls(settings.FCM_CREDENTIALS_FILE, settings.FCM_PROJECT_ID)

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        from firebase_admin import messaging

        results: list[PushResult] = []
        for start in range(0, len(messages), FCM_BATCH_LIMIT):
            chunk = messages[start : start + FCM_BATCH_LIMIT]
            batch = messaging.send_each([_fcm_message(m) for m in chunk], app=self.app)
            results += [_fcm_result(r) for r in batch.responses]
        return results


def _fcm_message(m: PushMessage) -> Any:

    # Devices register FCM registration tokens, which FCM v1 still takes as
    # `message.token`; firebase-admin 7.7 nudges new code towards installation ids.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Message.token is deprecated", DeprecationWarning)
        return _fcm_message_with_token(m)


def _fcm_message_with_token(m: PushMessage) -> Any:
    from firebase_admin import messaging

    return messaging.Message(
        token=m.token,
        notification=messaging.Notification(title=m.title, body=m.body),
        data=m.data,
        android=messaging.AndroidConfig(
            collapse_key=m.collapse_id[:64], notification=messaging.AndroidNotification(tag=m.collapse_id)
        ),
        apns=messaging.APNSConfig(headers={"apns-collapse-id": m.collapse_id[:64]}),
    )


def _fcm_result(response: Any) -> PushResult:
    from firebase_admin import exceptions, messaging

    if response.success:
        return PushResult(Outcome.SENT, message_id=response.message_id)
    exc = response.exception
    error = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, (messaging.UnregisteredError, messaging.SenderIdMismatchError)):
        return PushResult(Outcome.INVALID_TOKEN, error=error)
    transient = (
        exceptions.ResourceExhaustedError,  # QuotaExceededError among them
        exceptions.UnavailableError,
        exceptions.InternalError,
        exceptions.DeadlineExceededError,
        exceptions.UnknownError,
    )
    if isinstance(exc, transient):
        return PushResult(Outcome.RETRY, error=error)
    return PushResult(Outcome.FAILED, error=error)


@cache
def _firebase_app(credentials_file: str, project_id: str) -> Any:
    import firebase_admin
    from firebase_admin import credentials

    if not credentials_file:
        raise PermanentError("PUSH_BACKEND=fcm needs FCM_CREDENTIALS_FILE (a service-account JSON file)")
    options = {"projectId": project_id} if project_id else None
    return firebase_admin.initialize_app(
        credentials.Certificate(credentials_file), options, name="selfos-push"
    )


def get_backend() -> PushBackend:
    """The backend PUSH_BACKEND names (a short name or a dotted path; see workers.pluggables)."""
    from ..pluggables import build

    return build("PUSH_BACKEND")
