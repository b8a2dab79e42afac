"""pg_slow_queries' argument checks: a bad option or a refused statement fails before connecting."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.modules import pg_slow_queries

from .utils import run_module

BASE = {"host": "127.0.0.1", "port": 1, "connect_timeout": 1}


@pytest.mark.parametrize("args, message", [
    ({"top": 0}, "top: must be at least 1"),
    ({"min_calls": -1}, "min_calls: must be at least 0"),
    ({"missing_index_min_rows": -10}, "missing_index_min_rows: must be at least 0"),
    ({"min_duration": "a while"}, "min_duration: expected seconds or a duration"),
    ({"explain_params": ["1"]}, "explain_params: only used with explain or explain_queryid"),
    ({"explain": "DELETE FROM assignments"}, "explain: only a SELECT statement can be explained, got DELETE"),
    ({"explain": "SELECT 1; DROP TABLE people"}, "explain: only a single statement can be explained"),
    ({"explain": "SELECT pg_terminate_backend(7)", "explain_analyze": True}, "explain_analyze: refusing to execute"),
    ({"explain": "SELECT 1", "explain_queryid": 5}, "parameters are mutually exclusive: explain|explain_queryid"),
    ({"order_by": "random()"}, "value of order_by must be one of"),
])
def test_refused_before_connecting(monkeypatch, args, message):
    result, failed = run_module(monkeypatch, pg_slow_queries.main, {**BASE, **args})
    assert failed
    assert result["msg"].startswith(message), result["msg"]


def test_valid_select_gets_as_far_as_connecting(monkeypatch):
    result, failed = run_module(monkeypatch, pg_slow_queries.main, {**BASE, "explain": "SELECT * FROM people WHERE id = $1"})
    assert failed and result["msg"].startswith("host: cannot reach PostgreSQL")
