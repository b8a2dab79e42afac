"""The log_query module through its main(): options, errors, check mode."""

from __future__ import annotations

import json

import pytest

from ansible_collections.sre.runbooks.plugins.modules import log_query
from ansible_collections.sre.runbooks.tests.unit.plugins.modules.utils import run_module


def write_log(tmp_path):
    lines = [
        {"timestamp": "2026-11-23T09:00:00+00:00", "level": "INFO", "message": "ok"},
        {"timestamp": "2026-11-23T09:10:00+00:00", "level": "ERROR", "message": "Query 12 failed",
         "exception": {"type": "OperationalError", "value": "timeout", "traceback": "Traceback"}},
        {"timestamp": "2026-11-23T09:20:00+00:00", "level": "ERROR", "message": "Query 99 failed",
         "exception": {"type": "OperationalError", "value": "timeout", "traceback": "Traceback"}},
        {"timestamp": "2026-11-23T09:30:00+00:00", "level": "WARNING", "message": "auth_failure ip=203.0.113.7 account=alice",
         "event": "auth_failure", "ip": "203.0.113.7", "account": "alice"},
    ]
    path = tmp_path / "scheduler.log"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot a record\n", encoding="utf-8")
    return str(path)


def test_error_query_in_check_mode(monkeypatch, tmp_path):
    path = write_log(tmp_path)
    result, failed = run_module(monkeypatch, log_query.main, {
        "path": path, "level": "ERROR", "since": "1h", "now": "2026-11-23T09:40:00Z", "_ansible_check_mode": True})
    assert not failed, result
    assert result["changed"] is False
    assert result["matched"] == 2
    assert result["groups"][0]["key"] == "OperationalError: Query <n> failed" and result["groups"][0]["count"] == 2
    assert result["window"]["since"].startswith("2026-11-23T08:40:00")
    assert result["records"][-1]["message"] == "Query 99 failed"
    # The level prefilter never looks at the garbage line; a query that reads every line counts it.
    assert result["files"][0]["prefilter"] and result["unparsed_lines"] == 0
    assert "2 matching records" in result["summary"]
    everything, failed = run_module(monkeypatch, log_query.main, {"path": path})
    assert not failed and everything["unparsed_lines"] == 1 and everything["unparsed_samples"] == ["not a record"]
    assert everything["files"][0]["prefilter"] is None and everything["matched"] == 4


def test_auth_mode(monkeypatch, tmp_path):
    result, failed = run_module(monkeypatch, log_query.main, {"path": write_log(tmp_path), "mode": "auth"})
    assert not failed, result
    assert result["auth"]["by_ip"][0]["key"] == "203.0.113.7"
    assert result["auth"]["indicators"] == []
    assert result["group_by"] == "ip"


@pytest.mark.parametrize("args, option, words", [
    ({"path": "/nonexistent/app.log"}, "path", "does not exist"),
    ({"since": "around lunch"}, "since", "since"),
    ({"regex": "([a-z"}, "regex", "regex"),
    ({"level": "SHOUTING"}, "level", "unknown level"),
    ({"default_timezone": "Nowhere/Special"}, "default_timezone", "time zone"),
    ({"mode": "auth", "auth_timeline_buckets": 0}, "auth_timeline_buckets", "1 or more"),
    ({"mode": "auth", "auth_account_field": [""]}, "auth_account_field", "field name"),
])
def test_bad_input_names_the_option(monkeypatch, tmp_path, args, option, words):
    params = {"path": write_log(tmp_path)}
    params.update(args)
    result, failed = run_module(monkeypatch, log_query.main, params)
    assert failed
    assert result["msg"].startswith(option + ":")
    assert words in result["msg"]
    assert result["option"] == option


def test_unknown_option_fails(monkeypatch, tmp_path):
    result, failed = run_module(monkeypatch, log_query.main, {"path": write_log(tmp_path), "lines": 5})
    assert failed
    assert "lines" in result["msg"]


def test_level_and_levels_are_exclusive(monkeypatch, tmp_path):
    result, failed = run_module(monkeypatch, log_query.main, {"path": write_log(tmp_path), "level": "ERROR", "levels": ["ERROR"]})
    assert failed and "mutually exclusive" in result["msg"]


def test_bad_choice_for_format(monkeypatch, tmp_path):
    result, failed = run_module(monkeypatch, log_query.main, {"path": write_log(tmp_path), "format": "xml"})
    assert failed and "format" in result["msg"]


def test_documentation_matches_argument_spec():
    import yaml  # pylint: disable=import-outside-toplevel

    doc = yaml.safe_load(log_query.DOCUMENTATION)
    spec = log_query.argument_spec()
    assert set(doc["options"]) == set(spec)
    for name, option in doc["options"].items():
        assert option["type"] == spec[name]["type"], name
        assert option.get("default") == spec[name].get("default"), name
        assert option.get("choices") == spec[name].get("choices"), name
    yaml.safe_load(log_query.EXAMPLES)
    yaml.safe_load(log_query.RETURN)
