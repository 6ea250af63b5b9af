"""Loopback servers that speak the protocols of services that cannot run here.

The real client libraries talk to them over HTTP on 127.0.0.1:
- FakeFCM: Google's OAuth token endpoint and FCM HTTP v1 `messages:send`, for firebase-admin
  (`hold(token)` keeps the answer to a send back until the test releases it);
- FakeChat: OpenAI-style `/v1/chat/completions`, for the story writer.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _JSONHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            from urllib.parse import parse_qs

            return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

    def reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def fcm_error(status: int, code: str, fcm_code: str | None = None) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {"code": status, "message": f"fake {code}", "status": code}
    if fcm_code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        ]
    return status, {"error": error}


UNREGISTERED = fcm_error(404, "NOT_FOUND", "UNREGISTERED")
SENDER_MISMATCH = fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")
QUOTA = fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
UNAVAILABLE = fcm_error(502, "UNAVAILABLE")
RETRIED_BY_CLIENT = fcm_error(503, "UNAVAILABLE")  # firebase-admin retries 500/503 itself
INVALID = fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")


class _FCMHandler(_JSONHandler):
    def do_POST(self) -> None:
        fake: FakeFCM = self.server.fake  # type: ignore[attr-defined]
        body = self.body()
        if self.path == "/token":
            fake.token_requests += 1
            self.reply(200, {"access_token": "fake-access-token", "expires_in": 3600, "token_type": "Bearer"})
            return
        if not self.path.endswith("/messages:send"):
            self.reply(404, {"error": {"code": 404, "message": "no such path", "status": "NOT_FOUND"}})
            return
        if self.headers.get("Authorization") != "Bearer fake-access-token":
            self.reply(*fcm_error(401, "UNAUTHENTICATED"))
            return
        message = body["message"]
        token = message["token"]
        hold = None
        with fake.lock:
            fake.attempts[token] += 1
            planned = fake.plans[token].popleft() if fake.plans[token] else None
            if planned is None:
                fake.delivered.append(message)
                number = len(fake.delivered)
                armed = fake.holds.get(token)  # a hold takes one send (reset() releases it)
                if armed is not None and not armed.reached.is_set():
                    armed.reached.set()  # FCM has the push: it counts as delivered...
                    hold = armed
        if planned is not None:
            self.reply(*planned)
            return
        answer = {"name": f"projects/selfos-test/messages/{number}"}
        if hold is None:
            self.reply(200, answer)
            return
        hold.released.wait(Hold.TIMEOUT)  # ...and the sender hears of it only on release
        self.close_connection = True
        with contextlib.suppress(OSError):  # the sender may be gone (killed while it waited)
            self.reply(200, answer)


class Hold:
    """The next successful send to one token, held by FakeFCM: taken, not yet answered."""

    TIMEOUT = 60.0  # never hold a server thread for ever, should a test forget to release

    def __init__(self, token: str) -> None:
        self.token = token
        self.reached = threading.Event()  # set once FCM has the push and is holding its answer
        self.released = threading.Event()

    def release(self) -> None:
        self.released.set()


class FakeFCM(_Server):
    """FCM HTTP v1 on loopback. `plan(token, *responses)` scripts failures, in order, before success;
    `hold(token)` holds the answer to the next successful send to `token` until released."""

    project_id = "selfos-test"

    def __init__(self, workdir: Path) -> None:
        self.lock = threading.Lock()
        self.plans: dict[str, deque[tuple[int, dict[str, Any]]]] = defaultdict(deque)
        self.holds: dict[str, Hold] = {}
        self.attempts: dict[str, int] = defaultdict(int)
        self.delivered: list[dict[str, Any]] = []
        self.token_requests = 0
        super().__init__(_FCMHandler)
        self.credentials_file = workdir / "service-account.json"
        self.credentials_file.write_text(json.dumps(self._service_account()))

    def _service_account(self) -> dict[str, str]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "fake-key",
            "private_key": pem,
            "client_email": f"push@{self.project_id}.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": f"{self.url}/token",
        }

    @property
    def send_url_template(self) -> str:
        return f"{self.url}/v1/projects/{{0}}/messages:send"

    def plan(self, token: str, *responses: tuple[int, dict[str, Any]]) -> None:
        self.plans[token].extend(responses)

    def hold(self, token: str) -> Hold:
        """Record the next successful send to `token` as delivered, then keep its answer back
        until `release()`: the push has reached FCM, the sender does not know it yet."""
        with self.lock:
            hold = self.holds[token] = Hold(token)
        return hold

    def delivered_to(self, token: str) -> list[dict[str, Any]]:
        return [m for m in self.delivered if m["token"] == token]

    def reset(self) -> None:
        with self.lock:
            self.plans.clear()
            self.attempts.clear()
            self.delivered.clear()
            for hold in self.holds.values():
                hold.release()
            self.holds.clear()


class _ChatHandler(_JSONHandler):
    def do_POST(self) -> None:
        fake: FakeChat = self.server.fake  # type: ignore[attr-defined]
        if self.path != "/v1/chat/completions":
            self.reply(404, {"error": {"message": "not found"}})
            return
        body = self.body()
        fake.requests.append({"headers": dict(self.headers), "body": body})
        planned = fake.plan.popleft() if fake.plan else None
        if planned == "slow":
            time.sleep(fake.slow_seconds)
            planned = None
        if planned is not None:
            self.reply(planned, {"error": {"message": f"fake {planned}"}})
            return
        facts = body["messages"][-1]["content"]
        text = f"A story from the model, told from these facts: {facts}"
        self.reply(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
            },
        )


class FakeChat(_Server):
    """An OpenAI-compatible chat-completions server. `plan` queues failures: a status code or "slow"."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.plan: deque[int | str] = deque()
        self.slow_seconds = 2.0
        super().__init__(_ChatHandler)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"
