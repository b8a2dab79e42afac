# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""N requests to one URL: status counts, error rates, latency percentiles and throughput.

The runbooks' ``curl /health`` and ``quick_load_test.py``.  Requests go through ansible's
``Request`` (no third-party library on the target), from ``concurrency`` threads, each a
new connection, as independent clients would; latency is measured to the last byte.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.urls import Request, make_context

MAX_COUNT = 10000
MAX_CONCURRENCY = 100
MAX_DURATION = 3600
ERROR_SAMPLES = 5
# Bodies are read whole (latency is to the last byte) but only this much is kept for matching.
BODY_KEEP_BYTES = 1024 * 1024
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
SENSITIVE_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token", "api-key")


@dataclass
class Outcome:
    """One request: ``status`` None means a transport error (``error`` says which)."""

    status: int | None
    seconds: float
    body: bytes = b""
    error: str | None = None


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    if not 0 <= fraction <= 1:
        raise ValueError(f"percentile fraction must be between 0 and 1, got {fraction}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def redact_url(url: str) -> str:
    """Hide a password in ``scheme://user:password@host`` before the URL is echoed."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:********@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def sensitive_header_values(headers: dict[str, str] | None) -> list[str]:
    """Values of headers that carry credentials, for the module's no_log_values."""
    values = []
    for name, value in (headers or {}).items():
        if str(name).lower() in SENSITIVE_HEADERS and value:
            values.append(str(value))
            # "Bearer abc": hide the bare token as well, it may be echoed on its own
            token = str(value).split(None, 1)
            if len(token) == 2 and len(token[1]) >= 4:
                values.append(token[1])
    return values


def describe_transport_error(exc: BaseException, timeout: float) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
        return f"timed out after {timeout:g}s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(reason, http.client.HTTPException):
        return f"bad HTTP response: {type(reason).__name__} {reason}".strip()
    text = str(reason) or type(reason).__name__
    return text[:300]


def _read(response, keep: int = BODY_KEEP_BYTES) -> bytes:
    kept = bytearray()
    while True:
        chunk = response.read(65536)
        if not chunk:
            return bytes(kept)
        if len(kept) < keep:
            kept.extend(chunk[:keep - len(kept)])


def make_sender(method: str, data: bytes | None, headers: dict[str, str], timeout: float, validate_certs: bool,
                ca_path: str | None, follow_redirects: bool, use_proxy: bool) -> Callable[[str], Outcome]:
    """A function that sends one request to a URL and times it to the last byte."""
    follow = "safe" if follow_redirects else "none"
    # open_url builds a TLS context (loading the CA store, ~5-100 ms) per request; one shared context keeps
    # that out of every measured latency.
    context = make_context(cafile=ca_path, validate_certs=validate_certs)

    def send(url: str) -> Outcome:
        start = time.perf_counter()
        try:
            response = Request().open(method, url, data=data, headers=dict(headers), timeout=timeout,
                                      validate_certs=validate_certs, ca_path=ca_path, follow_redirects=follow,
                                      use_proxy=use_proxy, context=context)
            status, body = response.getcode(), _read(response)
        except HTTPError as exc:
            status, body = exc.code, (_read(exc) if exc.fp else b"")
        except (URLError, OSError, http.client.HTTPException, ValueError) as exc:
            return Outcome(None, time.perf_counter() - start, error=describe_transport_error(exc, timeout))
        return Outcome(status, time.perf_counter() - start, body=body)

    return send


def validate_url(url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url: expected an http(s) URL such as http://127.0.0.1:8000/health, got {redact_url(url or '')!r}")
    try:
        parts.port  # pylint: disable=pointless-statement
    except ValueError:
        raise ValueError(f"url: the port in {redact_url(url)!r} is not a number between 0 and 65535") from None
    return url


def build_request(params: dict[str, Any]) -> tuple[bytes | None, dict[str, str]]:
    """The body and headers to send, from ``body`` / ``json``, ``headers``, ``secret_headers``, ``bearer_token``."""
    headers = {}
    for option in ("headers", "secret_headers"):
        for name, value in (params.get(option) or {}).items():
            name, value = str(name), str(value)
            # A CR or LF would end the header and start another one (or the body): refuse, never send.
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{option}: {name!r} is not a valid HTTP header name")
            if any(char in value for char in "\r\n\0"):
                shown = "the value" if option == "secret_headers" else repr(value)
                raise ValueError(f"{option}: {shown} of header {name!r} contains a line break or NUL")
            headers[name] = value
    if params.get("bearer_token"):
        if any(char in params["bearer_token"] for char in "\r\n\0 "):
            raise ValueError("bearer_token: contains a space, line break or NUL")
        headers["Authorization"] = f"Bearer {params['bearer_token']}"
    data = None
    if params.get("body") is not None and params.get("json") is not None:
        raise ValueError("body: set either body or json, not both")
    if params.get("json") is not None:
        try:
            data = json.dumps(params["json"]).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"json: cannot be encoded as JSON: {exc}") from None
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    elif params.get("body") is not None:
        data = str(params["body"]).encode("utf-8")
    if data is not None and params.get("method", "GET") in ("GET", "HEAD"):
        raise ValueError(f"method: {params['method']} requests carry no body; use POST (or PUT/PATCH) with body or json")
    return data, headers


def _validate(params: dict[str, Any]) -> re.Pattern | None:
    validate_url(params["url"])
    if not 1 <= params["count"] <= MAX_COUNT:
        raise ValueError(f"count: must be between 1 and {MAX_COUNT}, got {params['count']}")
    if not 1 <= params["concurrency"] <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency: must be between 1 and {MAX_CONCURRENCY}, got {params['concurrency']}")
    if not 0 < params["timeout"] <= 300:
        raise ValueError(f"timeout: must be more than 0 and at most 300 seconds, got {params['timeout']}")
    if not 0 < params["max_duration"] <= MAX_DURATION:
        raise ValueError(f"max_duration: must be more than 0 and at most {MAX_DURATION} seconds, got {params['max_duration']}")
    for status in params["expected_status"]:
        if not 100 <= status <= 599:
            raise ValueError(f"expected_status: {status} is not an HTTP status code (100-599)")
    if not params["expected_status"]:
        raise ValueError("expected_status: give at least one status code")
    fail_on = params.get("fail_on") or {}
    rate = fail_on.get("max_error_rate")
    if rate is not None and not 0 <= rate <= 1:
        raise ValueError(f"fail_on.max_error_rate: must be a fraction between 0 and 1, got {rate}")
    p95 = fail_on.get("max_p95_ms")
    if p95 is not None and p95 <= 0:
        raise ValueError(f"fail_on.max_p95_ms: must be greater than 0, got {p95}")
    if params.get("body_regex"):
        try:
            return re.compile(params["body_regex"])
        except re.error as exc:
            raise ValueError(f"body_regex: not a valid regular expression: {exc}") from None
    return None


DEFAULTS: dict[str, Any] = {
    "method": "GET", "count": 10, "concurrency": 1, "timeout": 10.0, "headers": None, "secret_headers": None,
    "bearer_token": None, "body": None, "json": None, "expected_status": [200], "body_contains": None,
    "body_regex": None, "validate_certs": True, "ca_path": None, "follow_redirects": True, "use_proxy": True,
    "max_duration": 60.0, "fail_on": {"max_error_rate": 0.05, "max_p95_ms": 2000.0},
}


def probe(options: dict[str, Any], send: Callable[[str], Outcome] | None = None,
          clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Send the requests and summarise them.  ``send`` replaces the HTTP transport in unit tests."""
    params = dict(DEFAULTS)
    params.update({key: value for key, value in options.items() if value is not None})
    pattern = _validate(params)
    data, headers = build_request(params)
    if send is None:
        send = make_sender(params["method"], data, headers, params["timeout"], params["validate_certs"],
                           params["ca_path"], params["follow_redirects"], params["use_proxy"])
    url, count, expected = params["url"], params["count"], set(params["expected_status"])
    contains = params["body_contains"].encode("utf-8") if params["body_contains"] else None

    outcomes: list[tuple[int, Outcome]] = []
    lock = threading.Lock()
    next_index = [0]
    started = clock()
    deadline = started + params["max_duration"]
    stop_reason: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                if next_index[0] >= count:
                    return
                if clock() >= deadline:
                    if not stop_reason:
                        stop_reason.append("max_duration")
                    return
                index = next_index[0]
                next_index[0] += 1
            outcome = send(url)
            with lock:
                outcomes.append((index, outcome))

    threads = [threading.Thread(target=worker, daemon=True) for _index in range(min(params["concurrency"], count))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    duration = max(clock() - started, 1e-9)
    outcomes.sort(key=lambda item: item[0])
    return summarise(outcomes, params, expected, contains, pattern, duration, stop_reason[0] if stop_reason else None)


def classify(outcome: Outcome, expected: set[int], contains: bytes | None, pattern: re.Pattern | None) -> str:
    """ok, unexpected_status, body_mismatch or transport."""
    if outcome.status is None:
        return "transport"
    if outcome.status not in expected:
        return "unexpected_status"
    if contains is not None and contains not in outcome.body:
        return "body_mismatch"
    if pattern is not None and not pattern.search(outcome.body.decode("utf-8", errors="replace")):
        return "body_mismatch"
    return "ok"


def summarise(outcomes: list[tuple[int, Outcome]], params: dict[str, Any], expected: set[int], contains: bytes | None,
              pattern: re.Pattern | None, duration: float, stop_reason: str | None) -> dict[str, Any]:
    kinds = {"ok": 0, "unexpected_status": 0, "body_mismatch": 0, "transport": 0}
    status_counts: dict[str, int] = {}
    transport_errors: dict[str, int] = {}
    latencies: list[float] = []
    samples: list[dict[str, Any]] = []
    for index, outcome in outcomes:
        kind = classify(outcome, expected, contains, pattern)
        kinds[kind] += 1
        if outcome.status is not None:
            status_counts[str(outcome.status)] = status_counts.get(str(outcome.status), 0) + 1
            latencies.append(outcome.seconds * 1000.0)
        else:
            transport_errors[outcome.error or "unknown"] = transport_errors.get(outcome.error or "unknown", 0) + 1
        if kind != "ok" and len(samples) < ERROR_SAMPLES:
            sample: dict[str, Any] = {"request": index + 1, "kind": kind, "status": outcome.status,
                                      "latency_ms": round(outcome.seconds * 1000.0, 1)}
            if outcome.error:
                sample["error"] = outcome.error
            else:
                sample["body"] = outcome.body[:200].decode("utf-8", errors="replace")
            samples.append(sample)
    completed = len(outcomes)
    errors = completed - kinds["ok"]

    def rate(value: int) -> float | None:
        return round(value / completed, 4) if completed else None

    def ms(value: float | None) -> float | None:
        return round(value, 1) if value is not None else None

    latency = {
        "min": ms(min(latencies)) if latencies else None,
        "mean": ms(sum(latencies) / len(latencies)) if latencies else None,
        "p50": ms(percentile(latencies, 0.50)),
        "p95": ms(percentile(latencies, 0.95)),
        "p99": ms(percentile(latencies, 0.99)),
        "max": ms(max(latencies)) if latencies else None,
    }
    result: dict[str, Any] = {
        "url": redact_url(params["url"]),
        "method": params["method"],
        "requested": params["count"],
        "completed": completed,
        "stopped_early": stop_reason is not None,
        "stop_reason": stop_reason,
        "duration_seconds": round(duration, 3),
        "throughput_rps": round(completed / duration, 2),
        "reachable": bool(status_counts),
        "status_counts": dict(sorted(status_counts.items())),
        "ok": kinds["ok"],
        "errors": {"total": errors, "unexpected_status": kinds["unexpected_status"],
                   "body_mismatch": kinds["body_mismatch"], "transport": kinds["transport"]},
        "transport_errors": transport_errors,
        "error_rate": rate(errors),
        "status_error_rate": rate(kinds["unexpected_status"]),
        "transport_error_rate": rate(kinds["transport"]),
        "latency_ms": latency,
        "error_samples": samples,
    }
    reasons = []
    fail_on = params.get("fail_on") or {}
    max_rate, max_p95 = fail_on.get("max_error_rate"), fail_on.get("max_p95_ms")
    if completed == 0:
        reasons.append("no request completed")
    if max_rate is not None and result["error_rate"] is not None and result["error_rate"] > max_rate:
        reasons.append(f"error rate {result['error_rate']:.2%} is above {max_rate:.2%}")
    if max_p95 is not None and latency["p95"] is not None and latency["p95"] > max_p95:
        reasons.append(f"p95 latency {latency['p95']} ms is above {max_p95:g} ms")
    result["healthy"] = not reasons
    result["unhealthy_reasons"] = reasons
    return result
