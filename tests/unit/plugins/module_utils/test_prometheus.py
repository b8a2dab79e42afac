"""Pure logic of the Prometheus client: time parsing, result flattening."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _prometheus as prom
from ansible_collections.sre.runbooks.plugins.modules import prometheus_query
from tests.unit.plugins.modules.utils import run_module

NOW = 1_800_000_000.0


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), ("1.5h", 5400), ("500ms", 0.5)])
def test_parse_duration(text, seconds):
    assert prom.parse_duration(text, "step") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "-5m", "1y", "5m;drop"])
def test_parse_duration_rejects_and_names_option(text):
    with pytest.raises(ValueError, match="^step: expected a duration"):
        prom.parse_duration(text, "step")


def test_resolve_time_forms():
    assert prom.resolve_time("now", "time", NOW) == NOW
    assert prom.resolve_time("15m", "time", NOW) == NOW - 900
    assert prom.resolve_time("1700000000", "time", NOW) == 1_700_000_000.0
    assert prom.resolve_time("2023-11-14T22:13:20+00:00", "time", NOW) == 1_700_000_000.0


def test_resolve_time_refuses_naive_and_garbage():
    with pytest.raises(ValueError, match="^start: .* has no timezone"):
        prom.resolve_time("2026-11-23T09:00:00", "start", NOW)
    with pytest.raises(ValueError, match="^end: expected"):
        prom.resolve_time("yesterday", "end", NOW)


def test_normalise_vector_nan_becomes_none():
    data = {"resultType": "vector", "result": [
        {"metric": {"handler": "/a"}, "value": [NOW, "0.25"]},
        {"metric": {"handler": "/b"}, "value": [NOW, "NaN"]},
    ]}
    result = prom._normalise_result(data)  # pylint: disable=protected-access
    assert prom.index_by_label(result["series"], "handler") == {"/a": 0.25, "/b": None}


def test_normalise_matrix_summary():
    data = {"resultType": "matrix", "result": [{"metric": {"instance": "app1"}, "values": [[NOW, "1"], [NOW + 60, "3"], [NOW + 120, "+Inf"]]}]}
    series = prom._normalise_result(data)["series"][0]  # pylint: disable=protected-access
    assert (series["min"], series["max"], series["last"]) == (1.0, 3.0, 3.0)
    assert series["values"][2][1] is None


def test_bad_url_names_option(monkeypatch):
    result, failed = run_module(monkeypatch, prometheus_query.main, {"url": "127.0.0.1:9090", "query": "up"})
    assert failed and result["msg"].startswith("url: expected an http(s) URL")


def test_query_required_for_instant(monkeypatch):
    result, failed = run_module(monkeypatch, prometheus_query.main, {"url": "http://127.0.0.1:1"})
    assert failed and result["msg"] == "query: required when kind=instant"


def test_unknown_option_rejected(monkeypatch):
    result, failed = run_module(monkeypatch, prometheus_query.main, {"query": "up", "querry": "up"})
    assert failed and "querry" in result["msg"]


def test_range_step_too_fine(monkeypatch):
    result, failed = run_module(monkeypatch, prometheus_query.main, {"url": "http://127.0.0.1:1", "query": "up", "kind": "range", "start": "7d", "step": "1s"})
    assert failed and result["msg"].startswith("step:")
