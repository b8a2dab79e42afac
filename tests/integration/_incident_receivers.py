"""Local stand-ins for the outside services the incident notifications go to; they record what they got.

``HttpReceiver`` answers like Slack (webhook and chat.postMessage), PagerDuty Events v2, a status-page webhook
and Grafana's annotation API; per path prefix it can instead answer 500 or close the connection ("down").
``SmtpSink`` is an aiosmtpd server that keeps every message (and accepts any login).
"""

from __future__ import annotations

import json
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.integration.conftest import free_port


class HttpReceiver:
    """Records every request; ``behaviour[prefix]`` is ``"ok"``, an HTTP status, or ``"close"``."""

    def __init__(self):
        self.requests: list[dict[str, Any]] = []
        self.behaviour: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._slack_ts = 1000
        self._annotation = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # pylint: disable=arguments-differ
                return

            def do_POST(self):  # pylint: disable=invalid-name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with receiver._lock:
                    receiver.requests.append({"time": time.time(), "path": self.path, "headers": dict(self.headers), "json": body})
                behaviour = next((v for k, v in receiver.behaviour.items() if self.path.startswith(k)), "ok")
                if behaviour == "close":
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.close()
                    return
                if isinstance(behaviour, int):
                    self._answer(behaviour, {"message": "down"})
                    return
                self._answer(*receiver.answer(self.path, body))

            def _answer(self, status: int, payload: Any):
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def answer(self, path: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            if path.startswith("/slack/api"):
                self._slack_ts += 1
                return 200, {"ok": True, "channel": "C0INCIDENTS", "ts": f"{self._slack_ts}.000100"}
            if path.startswith("/slack"):
                return 200, "ok"
            if path.startswith("/pagerduty"):
                return 202, {"status": "success", "message": "Event processed", "dedup_key": (body or {}).get("dedup_key")}
            if path.startswith("/grafana/api/annotations"):
                self._annotation += 1
                return 200, {"message": "Annotation added", "id": self._annotation}
        return 200, {"ok": True}

    def on(self, prefix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Handler:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):  # pylint: disable=invalid-name,unused-argument
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.sink.messages.append({"time": time.time(), "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                   "subject": message["Subject"], "headers": dict(message.items()),
                                   "body": message.get_content()})
        return "250 OK"


class SmtpSink:
    """aiosmtpd on a free loopback port; ``messages`` holds what arrived; logins are accepted and remembered."""

    def __init__(self):
        self.messages: list[dict[str, Any]] = []
        self.logins: list[tuple[str, str]] = []
        self.port = free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     authenticator=self._authenticate, auth_require_tls=False)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):  # pylint: disable=unused-argument
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()
