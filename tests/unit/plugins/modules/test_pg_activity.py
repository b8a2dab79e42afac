"""pg_activity's argument checks: bad input fails before any connection is attempted."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.modules import pg_activity

from .utils import run_module

# Nothing listens on port 1: a test that got as far as connecting would fail with a host: message instead.
BASE = {"host": "127.0.0.1", "port": 1, "connect_timeout": 1}


@pytest.mark.parametrize("args, message", [
    ({"long_running_threshold": "forever"}, "long_running_threshold: expected seconds or a duration"),
    ({"idle_in_transaction_threshold": "-5"}, "idle_in_transaction_threshold: must not be negative"),
    ({"limit": 0}, "limit: must be at least 1"),
    ({"query_max_length": -1}, "query_max_length: must not be negative"),
    ({"sample_interval": -1}, "sample_interval: must not be negative"),
    ({"sample_count": 1, "sample_interval": 5}, "sample_count: must be at least 2"),
    ({"leak_min_growth": 0}, "leak_min_growth: must be at least 1"),
    ({"query_timeout": "0"}, "query_timeout: must be greater than 0"),
    ({"port": 0}, "port: must be between 1 and 65535"),
])
def test_bad_options_are_named(monkeypatch, args, message):
    result, failed = run_module(monkeypatch, pg_activity.main, {**BASE, **args})
    assert failed
    assert result["msg"].startswith(message), result["msg"]


def test_unreachable_server_is_a_clear_failure(monkeypatch):
    result, failed = run_module(monkeypatch, pg_activity.main, {**BASE, "password": "pw-never-shown"})
    assert failed and result["option"] == "host"
    assert result["msg"].startswith("host: cannot reach PostgreSQL at 127.0.0.1:1")
    assert "pw-never-shown" not in repr(result)
