"""pg_activity's analysis of pg_stat_activity rows: usage, breakdowns, thresholds, blocking chains, leaks."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._pg_activity import (
    blocking,
    breakdowns,
    findings,
    idle_in_transaction,
    leak_suspects,
    long_running,
    usage,
)


def row(pid, state="idle", app="api", user="scheduler", client="10.0.0.7", backend_type="client backend", own=False,
        query_seconds=0.0, state_seconds=0.0, transaction_seconds=None, blocked_by=None, query="SELECT 1", database="residency_scheduler"):
    return {"pid": pid, "state": state, "application_name": app, "user": user, "client_addr": client, "database": database,
            "backend_type": backend_type, "own": own, "query_seconds": query_seconds, "state_seconds": state_seconds,
            "transaction_seconds": transaction_seconds, "blocked_by": blocked_by, "query": query,
            "wait_event_type": "Lock" if blocked_by else None, "wait_event": None}


def settings(max_connections=100, superuser_reserved=3, reserved=None):
    result = {"max_connections": {"setting": str(max_connections)},
              "superuser_reserved_connections": {"setting": str(superuser_reserved)}}
    if reserved is not None:
        result["reserved_connections"] = {"setting": str(reserved)}
    return result


def test_usage_counts_client_backends_only_and_not_itself():
    rows = [row(i) for i in range(1, 96)] + [row(200, own=True), row(300, backend_type="autovacuum worker"),
                                             row(301, backend_type="walsender")]
    result = usage(rows, settings())
    assert result == {"total": 95, "max_connections": 100, "superuser_reserved_connections": 3, "normal_slots": 97,
                      "available_for_normal_users": 2, "usage_percent": 95.0, "normal_usage_percent": 97.9}


def test_usage_pg16_reserved_connections_and_exhaustion():
    rows = [row(i) for i in range(1, 101)]  # superusers can use the reserved slots too
    result = usage(rows, settings(max_connections=100, superuser_reserved=3, reserved=2))
    assert result["reserved_connections"] == 2
    assert result["normal_slots"] == 95
    assert result["available_for_normal_users"] == 0
    assert result["usage_percent"] == 100.0


def test_breakdowns_label_empty_values():
    rows = [row(1, app="", client=None), row(2, state="active"), row(3, state=None, user=None)]
    result = breakdowns(rows)
    assert result["application_name"] == {"api": 2, "(none)": 1}
    assert result["client_addr"] == {"10.0.0.7": 2, "local": 1}
    assert result["state"] == {"idle": 1, "active": 1, "(unknown)": 1}
    assert result["user"] == {"scheduler": 2, "(unknown)": 1}


def test_long_running_threshold_order_and_truncation():
    rows = [row(1, state="active", query_seconds=30), row(2, state="active", query_seconds=120, query="SELECT * FROM blocks"),
            row(3, state="idle", query_seconds=500), row(4, state="active", query_seconds=61)]
    found = long_running(rows, 60, query_max_length=10)
    assert [s["pid"] for s in found] == [2, 4]
    assert found[0]["duration_seconds"] == 120 and found[0]["query"] == "SELECT * …"


def test_idle_in_transaction_uses_time_since_going_idle():
    rows = [row(1, state="idle in transaction", state_seconds=45, transaction_seconds=300),
            row(2, state="idle in transaction (aborted)", state_seconds=31, transaction_seconds=31),
            row(3, state="idle in transaction", state_seconds=5, transaction_seconds=900),
            row(4, state="idle", state_seconds=999)]
    found = idle_in_transaction(rows, 30, 100)
    assert [(s["pid"], s["idle_seconds"], s["transaction_seconds"]) for s in found] == [(1, 45, 300), (2, 31, 31)]


def test_blocking_chain_roots_and_counts():
    rows = [row(10, state="idle in transaction", app="batch"), row(11, state="active", blocked_by=[10], query_seconds=8),
            row(12, state="active", blocked_by=[11]), row(13, state="active", blocked_by=[10, 11]), row(14)]
    result = blocking(rows, 100)
    assert [r["pid"] for r in result["root_blockers"]] == [10]
    root = result["root_blockers"][0]
    assert root["blocks_directly"] == [11, 13] and root["blocked_total"] == 3 and root["application_name"] == "batch"
    assert sorted(result["chains"]) == [[10, 11, 12], [10, 11, 13], [10, 13]]
    assert {b["pid"]: b["blocked_by"] for b in result["blocked"]} == {11: [10], 12: [11], 13: [10, 11]}
    assert result["blocked"][0]["waiting_seconds"] == 8
    assert result["deadlock_cycle_pids"] == []


def test_blocking_cycle_and_unknown_blocker():
    rows = [row(1, state="active", blocked_by=[2]), row(2, state="active", blocked_by=[1]), row(3, state="active", blocked_by=[99])]
    result = blocking(rows, 100)
    assert result["deadlock_cycle_pids"] == [1, 2]
    assert [r["pid"] for r in result["root_blockers"]] == [99]  # e.g. a prepared transaction: no row, still named
    assert result["root_blockers"][0] == {"pid": 99, "blocks_directly": [3], "blocked_total": 1}


def test_blocking_chain_count_is_bounded():
    rows = [row(1, state="idle in transaction")] + [row(i, state="active", blocked_by=[1]) for i in range(2, 200)]
    assert len(blocking(rows, 100, max_chains=50)["chains"]) == 50


@pytest.mark.parametrize("counts, min_growth, suspect", [
    ([0, 3], 2, True),
    ([2, 2], 1, False),
    ([5, 1], 1, False),
    ([1, 2], 2, False),
    ([1, 3, 2, 6], 2, False),  # went down once: a pool breathing, not a leak
    ([1, 2, 2, 6], 2, True),
])
def test_leak_suspects(counts, min_growth, suspect):
    samples = [[row(n, app="leaky") for n in range(count)] + [row(100, app="steady")] for count in counts]
    result = leak_suspects(samples, min_growth)
    if suspect:
        assert result == [{"application_name": "leaky", "user": "scheduler", "client_addr": "10.0.0.7",
                           "idle_counts": counts, "growth": counts[-1] - counts[0]}]
    else:
        assert result == []


def test_leak_suspects_count_idle_states_only_and_group_by_client():
    first = [row(1, client="10.0.0.8")]
    second = [row(1, client="10.0.0.8"), row(2, client="10.0.0.8", state="idle in transaction"), row(3, client="10.0.0.8", state="idle"),
              row(4, client="10.0.0.9", state="active"), row(5, client="10.0.0.9", state="active")]
    result = leak_suspects([first, second], 2)
    assert [(s["client_addr"], s["idle_counts"]) for s in result] == [("10.0.0.8", [1, 3])]


def test_findings_mention_exhaustion_and_leaks():
    result = {
        "usage": {"total": 97, "max_connections": 100, "usage_percent": 97.0, "available_for_normal_users": 0},
        "long_running": [{"pid": 7, "duration_seconds": 130.2, "application_name": "api"}],
        "idle_in_transaction": [{"pid": 8}], "settings": {"idle_in_transaction_session_timeout": "0"},
        "blocking": {"root_blockers": [{"pid": 8, "application_name": "batch", "state": "idle in transaction", "blocked_total": 4}]},
        "leak_suspects": [{"application_name": "api", "user": "scheduler", "client_addr": None, "idle_counts": [3, 9]}],
    }
    lines = findings(result, {"long_running": 60, "idle_in_transaction": 30})
    assert lines[0] == "97 client connections of max_connections 100 (97.0%), 0 left for non-superusers"
    assert "the pool is exhausted" in lines[1]
    assert "1 statements active longer than 60s (longest 130s, pid 7, api)" in lines
    assert "pid 8 (batch, idle in transaction) blocks 4 sessions" in lines
    assert lines[-1] == "possible connection leak: api as scheduler from local: idle connections 3 -> 9"
