"""prometheus_query against a real Prometheus started by the test."""

from __future__ import annotations

import time

import pytest

from ansible_collections.sre.runbooks.plugins.modules import prometheus_query
from tests.unit.plugins.modules.utils import run_module

from .conftest import free_port

pytestmark = pytest.mark.integration


def query(monkeypatch, server, **args):
    args.setdefault("url", server.url)
    return run_module(monkeypatch, prometheus_query.main, args)


def test_instant_query_indexed_by_label(monkeypatch, prometheus_server):
    result, failed = query(monkeypatch, prometheus_server, query="up", by="job")
    assert not failed, result
    assert result["changed"] is False and result["reachable"] is True
    assert result["result_type"] == "vector"
    assert result["values"] == {"self": 1.0}


def test_range_query_returns_points_and_summary(monkeypatch, prometheus_server):
    time.sleep(2)  # at least two scrapes in the window
    result, failed = query(monkeypatch, prometheus_server, kind="range", query="up", start="30s", step="1s")
    assert not failed, result
    series = result["series"][0]
    assert len(series["values"]) >= 2
    assert series["last"] == 1.0 and series["min"] == 1.0
    assert set(result["window"]) == {"start", "end", "step"}


def test_alerts_filtered_by_name_and_state(monkeypatch, prometheus_server):
    deadline = time.monotonic() + 15
    while True:
        result, failed = query(monkeypatch, prometheus_server, kind="alerts", alert_name=["AlwaysFiring"])
        assert not failed, result
        if result["alerts"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [a["labels"]["alertname"] for a in result["alerts"]] == ["AlwaysFiring"]
    none, _failed = query(monkeypatch, prometheus_server, kind="alerts", alert_name=["NoSuchAlert"])
    assert none["alerts"] == []


def test_malformed_promql_names_the_query(monkeypatch, prometheus_server):
    result, failed = query(monkeypatch, prometheus_server, query="rate(http_requests_total[5m]", allow_unreachable=True)
    assert failed
    assert result["msg"].startswith("query: Prometheus rejected the PromQL")


def test_unreachable_prometheus_is_a_finding_when_allowed(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    result, failed = run_module(monkeypatch, prometheus_query.main, {"url": url, "query": "up", "allow_unreachable": True})
    assert not failed
    assert result["reachable"] is False and url in result["error"]
    # Empty results, so a playbook's result['values'] is {} and not Jinja's fallback to the dict's values method.
    result, failed = run_module(monkeypatch, prometheus_query.main, {"url": url, "query": "up", "by": "job", "allow_unreachable": True})
    assert not failed and result["values"] == {} and result["series"] == []
    result, failed = run_module(monkeypatch, prometheus_query.main, {"url": url, "query": "up"})
    assert failed and result["msg"].startswith("url: cannot reach")


def test_secret_token_is_not_returned(monkeypatch, prometheus_server):
    result, failed = query(monkeypatch, prometheus_server, query="up", bearer_token="s3cr3t-token-value")
    assert not failed
    assert "s3cr3t-token-value" not in repr(result)
