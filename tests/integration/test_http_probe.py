"""http_probe against a small HTTP server started by the test: 500s, slow answers, auth, redirects, a dead port."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.modules import http_probe
from tests.unit.plugins.modules.utils import run_module

from .conftest import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cret-token-value"
# long enough that a slow answer stays distinguishable from a fast one on a loaded machine
SLOW_SECONDS = 1.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _next(self, path: str) -> int:
        with self.server.lock:
            self.server.counters[path] = self.server.counters.get(path, 0) + 1
            return self.server.counters[path]

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        with self.server.lock:
            self.server.in_flight += 1
            self.server.peak_in_flight = max(self.server.peak_in_flight, self.server.in_flight)
        try:
            self._get()
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def _get(self):
        path = self.path.split("?")[0]
        number = self._next(path)
        if path == "/health":
            self._send(200, b'{"status": "healthy"}')
        elif path == "/flaky":  # every 4th request fails
            self._send(500 if number % 4 == 0 else 200, b"boom" if number % 4 == 0 else b"ok")
        elif path == "/sometimes-slow":  # every 5th request is slow
            if number % 5 == 0:
                time.sleep(SLOW_SECONDS)
            self._send(200, b"ok")
        elif path == "/slow":
            time.sleep(SLOW_SECONDS)
            self._send(200, b"ok")
        elif path == "/auth":
            self._send(200 if self.headers.get("Authorization") == f"Bearer {SECRET}" else 401, b"")
        elif path == "/redirect":
            self._send(302, b"", {"Location": "/health"})
        else:
            self._send(404, b"not found")

    def do_POST(self):
        self._next(self.path)
        length = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(length) or b"null")
        answer = {"content_type": self.headers.get("Content-Type"), "keys": sorted(payload) if isinstance(payload, dict) else None}
        self._send(200, json.dumps(answer).encode())


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()
    httpd.counters = {}
    httpd.in_flight = httpd.peak_in_flight = 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """The same handler over https with a self-signed certificate for 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("tls")
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()
    httpd.counters = {}
    httpd.in_flight = httpd.peak_in_flight = 0
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.url = f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.cert = str(cert)
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(monkeypatch, **args):
    return run_module(monkeypatch, http_probe.main, args)


def reset(server, path):
    with server.lock:
        server.counters.pop(path, None)
        server.peak_in_flight = 0


def test_healthy_endpoint_in_check_mode(monkeypatch, server):
    result, failed = run(monkeypatch, url=f"{server.url}/health", count=5, body_contains="healthy", _ansible_check_mode=True)
    assert not failed, result
    assert result["changed"] is False
    assert result["completed"] == 5 and result["ok"] == 5 and result["status_counts"] == {"200": 5}
    assert result["error_rate"] == 0.0 and result["healthy"] is True and result["reachable"] is True
    assert 0 < result["latency_ms"]["min"] <= result["latency_ms"]["p50"] <= result["latency_ms"]["max"] < 1000


def test_flaky_endpoint_counts_500s(monkeypatch, server):
    reset(server, "/flaky")
    result, failed = run(monkeypatch, url=f"{server.url}/flaky", count=20, concurrency=4)
    assert not failed, result
    assert result["status_counts"] == {"200": 15, "500": 5}
    assert result["errors"] == {"total": 5, "unexpected_status": 5, "body_mismatch": 0, "transport": 0}
    assert result["status_error_rate"] == 0.25 and result["transport_error_rate"] == 0.0
    assert result["healthy"] is False and result["unhealthy_reasons"] == ["error rate 25.00% is above 5.00%"]
    assert result["error_samples"][0]["status"] == 500 and result["error_samples"][0]["body"] == "boom"


def test_unhealthy_fails_only_when_asked(monkeypatch, server):
    reset(server, "/flaky")
    result, failed = run(monkeypatch, url=f"{server.url}/flaky", count=8, fail_when_unhealthy=True)
    assert failed and "is unhealthy: error rate 25.00% is above 5.00%" in result["msg"]
    assert result["status_counts"] == {"200": 6, "500": 2}
    reset(server, "/flaky")
    result, failed = run(monkeypatch, url=f"{server.url}/flaky", count=8, fail_when_unhealthy=True, fail_on={"max_error_rate": 0.3})
    assert not failed and result["healthy"] is True


def test_slow_responses_show_in_the_tail_percentiles(monkeypatch, server):
    reset(server, "/sometimes-slow")
    result, failed = run(monkeypatch, url=f"{server.url}/sometimes-slow", count=20, concurrency=4, fail_on={"max_p95_ms": 900})
    assert not failed, result
    latency = result["latency_ms"]
    slow_ms = SLOW_SECONDS * 1000
    assert latency["min"] <= latency["p50"] < slow_ms, latency  # 16 of 20 are fast
    # 4 of 20 are slow: p95 and p99 interpolate between the two slowest answers
    assert slow_ms <= latency["p95"] <= latency["p99"] <= latency["max"] < slow_ms + 2000
    assert result["healthy"] is False and "p95 latency" in result["unhealthy_reasons"][0]
    # the server saw requests overlap: the 4 threads really ran side by side
    assert server.peak_in_flight >= 2
    assert result["throughput_rps"] == pytest.approx(20 / result["duration_seconds"], rel=0.01)


def test_timeouts_are_transport_errors(monkeypatch, server):
    result, failed = run(monkeypatch, url=f"{server.url}/slow", count=3, concurrency=3, timeout=0.1)
    assert not failed, result
    assert result["errors"]["transport"] == 3 and result["transport_error_rate"] == 1.0
    assert result["transport_errors"] == {"timed out after 0.1s": 3}
    assert result["reachable"] is False and result["latency_ms"]["p95"] is None


def test_unreachable_port(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/health"
    result, failed = run(monkeypatch, url=url, count=3)
    assert not failed, result
    assert result["transport_errors"] == {"connection refused": 3}
    assert result["reachable"] is False and result["healthy"] is False
    assert result["error_samples"][0] == {"request": 1, "kind": "transport", "status": None,
                                          "latency_ms": result["error_samples"][0]["latency_ms"], "error": "connection refused"}
    result, failed = run(monkeypatch, url=url, count=3, fail_when_unhealthy=True)
    assert failed and "error rate 100.00% is above 5.00%" in result["msg"]


def test_time_budget_stops_the_probe(monkeypatch, server):
    result, failed = run(monkeypatch, url=f"{server.url}/slow", count=100, max_duration=1)
    assert not failed, result
    assert result["stopped_early"] is True and result["stop_reason"] == "max_duration"
    assert 1 <= result["completed"] <= 1 / SLOW_SECONDS + 1
    assert result["duration_seconds"] < 1 + 2 * SLOW_SECONDS


def test_bearer_token_and_post_json(monkeypatch, server):
    result, _failed = run(monkeypatch, url=f"{server.url}/auth", count=2, bearer_token=SECRET)
    assert result["status_counts"] == {"200": 2}
    result, _failed = run(monkeypatch, url=f"{server.url}/auth", count=2, secret_headers={"Authorization": f"Bearer {SECRET}"})
    assert result["status_counts"] == {"200": 2}
    result, _failed = run(monkeypatch, url=f"{server.url}/auth", count=1)
    assert result["status_counts"] == {"401": 1} and result["errors"]["unexpected_status"] == 1
    result, failed = run(monkeypatch, url=f"{server.url}/predict", method="POST", count=3, json={"age": 63, "chol": 233},
                         body_regex=r'"keys": \["age", "chol"\]')
    assert not failed and result["ok"] == 3, result
    assert result["changed"] is False and result["error_samples"] == []


def test_head_and_redirects(monkeypatch, server):
    result, _failed = run(monkeypatch, url=f"{server.url}/health", method="HEAD", count=2)
    assert result["status_counts"] == {"200": 2}
    result, _failed = run(monkeypatch, url=f"{server.url}/redirect", count=2, body_contains="healthy")
    assert result["status_counts"] == {"200": 2} and result["ok"] == 2
    result, _failed = run(monkeypatch, url=f"{server.url}/redirect", count=2, follow_redirects=False, expected_status=[302])
    assert result["status_counts"] == {"302": 2} and result["ok"] == 2


def test_https_certificate_checks(monkeypatch, tls_server):
    url = f"{tls_server.url}/health"
    result, failed = run(monkeypatch, url=url, count=3, ca_path=tls_server.cert)
    assert not failed and result["ok"] == 3, result
    result, failed = run(monkeypatch, url=url, count=2, validate_certs=False)
    assert not failed and result["ok"] == 2, result
    result, failed = run(monkeypatch, url=url, count=2)  # self-signed: not trusted by the system store
    assert not failed and result["errors"]["transport"] == 2, result
    (reason,) = result["transport_errors"]
    assert "CERTIFICATE_VERIFY_FAILED" in reason


@pytest.mark.parametrize("args, message", [
    ({"count": 0}, "count: must be between 1 and 10000"),
    ({"count": 20000}, "count: must be between 1 and 10000"),
    ({"url": "localhost:8000/health"}, "url: expected an http(s) URL"),
    ({"body": "x"}, "method: GET requests carry no body"),
    ({"method": "POST", "body": "x", "json": {}}, "mutually exclusive: body|json"),
    ({"body_regex": "[unclosed"}, "body_regex: not a valid regular expression"),
    ({"expected_status": [999]}, "expected_status: 999 is not an HTTP status code"),
    ({"headers": {"X-Test": "a\r\nX-Injected: 1"}}, "headers: 'a\\r\\nX-Injected: 1' of header 'X-Test' contains a line break"),
    ({"headers": {"X-Test\r\nX-Injected": "1"}}, "is not a valid HTTP header name"),
    ({"secret_headers": {"X-Api-Key": "k\r\nHost: evil"}}, "secret_headers: the value of header 'X-Api-Key' contains a line break"),
    ({"bearer_token": "abc\r\nX-Injected: 1"}, "bearer_token: contains a space, line break or NUL"),
])
def test_bad_inputs_name_the_option(monkeypatch, server, args, message):
    args = dict({"url": f"{server.url}/health"}, **args)
    before = dict(server.counters)
    result, failed = run(monkeypatch, **args)
    assert failed and message in result["msg"], result
    assert server.counters == before  # nothing was sent


def test_credentials_never_reach_the_output(server):
    """Through ansible itself (not main() in-process), so the real no_log masking is what is tested."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    args = {"url": f"{server.url}/auth", "count": 2, "headers": {"Authorization": f"Bearer {SECRET}"},
            "fail_on": {"max_error_rate": 0}}
    done = subprocess.run([str(REPO / ".venv" / "bin" / "ansible"), "localhost", "-m", "sre.runbooks.http_probe",
                           "-a", json.dumps(args), "-vvv"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert '"200": 2' in output  # the header was sent
    assert SECRET not in output
