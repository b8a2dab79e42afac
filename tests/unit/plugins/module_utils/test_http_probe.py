"""Percentiles, classification, summaries and option checks of http_probe, with a fake transport."""

from __future__ import annotations

import itertools
import json
import socket
import threading
from urllib.error import URLError

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._http_probe import (
    Outcome,
    build_request,
    describe_transport_error,
    percentile,
    probe,
    redact_url,
    sensitive_header_values,
)


@pytest.mark.parametrize("values, fraction, expected", [
    ([1, 2, 3, 4, 5], 0.5, 3),
    ([1, 2, 3, 4], 0.5, 2.5),
    ([10], 0.99, 10),
    (list(range(1, 101)), 0.95, 95.05),
    (list(range(1, 101)), 0.99, 99.01),
    ([5, 1, 4, 2, 3], 0.0, 1),
    ([5, 1, 4, 2, 3], 1.0, 5),
])
def test_percentile_matches_linear_interpolation(values, fraction, expected):
    assert percentile(values, fraction) == pytest.approx(expected)


def test_percentile_of_nothing_and_bad_fraction():
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile([1], 1.5)


def sequence_sender(outcomes):
    """A transport that returns the given outcomes in order (thread-safe)."""
    lock = threading.Lock()
    iterator = iter(outcomes)

    def send(url):
        assert url == "http://127.0.0.1:1/health"
        with lock:
            return next(iterator)

    return send


def test_probe_counts_statuses_errors_and_percentiles():
    outcomes = ([Outcome(200, 0.010 * i, b"healthy") for i in range(1, 19)]
                + [Outcome(500, 0.5, b"boom"), Outcome(None, 1.0, error="connection refused")])
    result = probe({"url": "http://127.0.0.1:1/health", "count": 20, "body_contains": "healthy"}, send=sequence_sender(outcomes))
    assert result["completed"] == 20 and result["ok"] == 18
    assert result["status_counts"] == {"200": 18, "500": 1}
    assert result["errors"] == {"total": 2, "unexpected_status": 1, "body_mismatch": 0, "transport": 1}
    assert result["error_rate"] == 0.1 and result["status_error_rate"] == 0.05 and result["transport_error_rate"] == 0.05
    assert result["transport_errors"] == {"connection refused": 1}
    latencies = [10.0 * i for i in range(1, 19)] + [500.0]
    assert result["latency_ms"]["min"] == 10.0 and result["latency_ms"]["max"] == 500.0
    assert result["latency_ms"]["p50"] == pytest.approx(percentile(latencies, 0.5), abs=0.05)
    assert result["latency_ms"]["p95"] == pytest.approx(percentile(latencies, 0.95), abs=0.05)
    assert result["latency_ms"]["mean"] == pytest.approx(sum(latencies) / len(latencies), abs=0.05)
    assert [s["kind"] for s in result["error_samples"]] == ["unexpected_status", "transport"]
    assert result["error_samples"][0] == {"request": 19, "kind": "unexpected_status", "status": 500, "latency_ms": 500.0, "body": "boom"}
    assert result["healthy"] is False and "error rate 10.00% is above 5.00%" in result["unhealthy_reasons"][0]


def test_probe_body_checks_and_custom_expected_status():
    outcomes = [Outcome(204, 0.001, b'{"status": "ok"}'), Outcome(204, 0.001, b'{"status": "degraded"}'), Outcome(200, 0.001, b"")]
    result = probe({"url": "http://127.0.0.1:1/health", "count": 3, "expected_status": [204], "body_regex": r'"status":\s*"ok"',
                    "fail_on": {"max_error_rate": 1.0, "max_p95_ms": None}}, send=sequence_sender(outcomes))
    assert result["errors"]["body_mismatch"] == 1 and result["errors"]["unexpected_status"] == 1
    assert result["healthy"] is True


def test_probe_p95_threshold():
    outcomes = [Outcome(200, 3.0)] * 5
    result = probe({"url": "http://127.0.0.1:1/health", "count": 5}, send=sequence_sender(outcomes))
    assert result["error_rate"] == 0.0
    assert result["healthy"] is False and result["unhealthy_reasons"] == ["p95 latency 3000.0 ms is above 2000 ms"]


def test_probe_all_transport_errors_is_unreachable():
    outcomes = [Outcome(None, 0.001, error="connection refused")] * 4
    result = probe({"url": "http://127.0.0.1:1/health", "count": 4, "concurrency": 2}, send=sequence_sender(outcomes))
    assert result["reachable"] is False and result["transport_error_rate"] == 1.0
    assert result["latency_ms"]["p50"] is None and result["healthy"] is False


def test_probe_stops_at_max_duration():
    ticks = itertools.count()
    clock_lock = threading.Lock()

    def clock():
        with clock_lock:
            return float(next(ticks))  # every call is one second later

    result = probe({"url": "http://127.0.0.1:1/health", "count": 100, "max_duration": 5},
                   send=lambda url: Outcome(200, 0.001), clock=clock)
    assert result["stopped_early"] is True and result["stop_reason"] == "max_duration"
    assert 0 < result["completed"] < 100


def test_probe_concurrency_runs_requests_in_parallel():
    in_flight = []
    peak = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(4, timeout=5)

    def send(url):
        with lock:
            in_flight.append(1)
            peak[0] = max(peak[0], len(in_flight))
        barrier.wait()
        with lock:
            in_flight.pop()
        return Outcome(200, 0.001)

    result = probe({"url": "http://127.0.0.1:1/health", "count": 8, "concurrency": 4}, send=send)
    assert result["completed"] == 8 and peak[0] == 4


@pytest.mark.parametrize("options, message", [
    ({"url": "ftp://x/y"}, "url: expected an http"),
    ({"url": "127.0.0.1:8000/health"}, "url: expected an http"),
    ({"url": "http://127.0.0.1:99999/"}, "url: the port"),
    ({"count": 0}, "count: must be between 1 and 10000"),
    ({"count": 10001}, "count: must be between 1 and 10000"),
    ({"concurrency": 0}, "concurrency: must be between 1 and 100"),
    ({"timeout": 0}, "timeout: must be more than 0"),
    ({"max_duration": -1}, "max_duration: must be more than 0"),
    ({"expected_status": [200, 700]}, "expected_status: 700 is not an HTTP status code"),
    ({"expected_status": []}, "expected_status: give at least one"),
    ({"body_regex": "("}, "body_regex: not a valid regular expression"),
    ({"fail_on": {"max_error_rate": 5, "max_p95_ms": None}}, "fail_on.max_error_rate: must be a fraction"),
    ({"fail_on": {"max_error_rate": None, "max_p95_ms": 0}}, "fail_on.max_p95_ms: must be greater than 0"),
    ({"body": "x"}, "method: GET requests carry no body"),
    ({"method": "POST", "body": "x", "json": {"a": 1}}, "body: set either body or json"),
    ({"method": "POST", "json": {1, 2}}, "json: cannot be encoded"),
])
def test_bad_options_name_the_option(options, message):
    options = dict({"url": "http://127.0.0.1:1/health"}, **options)
    with pytest.raises(ValueError, match=message):
        probe(options, send=lambda url: pytest.fail("no request may be sent for bad options"))


def test_build_request_json_and_credentials():
    data, headers = build_request({"method": "POST", "json": {"age": 63}, "headers": {"X-Trace": "1"},
                                   "secret_headers": {"X-Api-Key": "k"}, "bearer_token": "t0k"})
    assert json.loads(data) == {"age": 63}
    assert headers == {"X-Trace": "1", "X-Api-Key": "k", "Authorization": "Bearer t0k", "Content-Type": "application/json"}
    _data, headers = build_request({"method": "POST", "json": [], "headers": {"content-type": "application/x-ndjson"}})
    assert "Content-Type" not in headers


def test_sensitive_header_values_and_url_redaction():
    values = sensitive_header_values({"Authorization": "Bearer abcdef", "Accept": "application/json", "Cookie": "s=1"})
    assert set(values) == {"Bearer abcdef", "abcdef", "s=1"}
    assert redact_url("http://user:pa55@127.0.0.1:8000/x?y=1") == "http://user:********@127.0.0.1:8000/x?y=1"
    assert redact_url("http://127.0.0.1:8000/x") == "http://127.0.0.1:8000/x"


@pytest.mark.parametrize("exc, expected", [
    (URLError(ConnectionRefusedError(111, "Connection refused")), "connection refused"),
    (URLError(socket.timeout("timed out")), "timed out after 2s"),
    (TimeoutError("The read operation timed out"), "timed out after 2s"),
    (ConnectionResetError(104, "reset"), "connection reset by peer"),
])
def test_describe_transport_error(exc, expected):
    assert describe_transport_error(exc, 2) == expected
