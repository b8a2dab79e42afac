"""The runbook decisions: error pattern, onset, deployment correlation, fleet evidence."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _triage as triage


def group(key, count, exc_type="", message="", first_seen=None):
    return {"key": key, "count": count, "exception_type": exc_type, "first_seen": first_seen,
            "sample": {"message": message, "exception": {"type": exc_type, "value": message}}}


@pytest.mark.parametrize("exc_type, message, pattern", [
    ("sqlalchemy.exc.OperationalError", "QueuePool limit of size 10 overflow 20 reached", "database"),
    ("psycopg.OperationalError", "connection to server at 127.0.0.1 failed", "database"),
    ("jose.exceptions.JWTError", "Signature verification failed", "authentication"),
    ("HTTPException", "401 Unauthorized", "authentication"),
    ("pydantic_core.ValidationError", "1 validation error for ScheduleCreate", "validation"),
    ("KeyError", "'rotation_id'", "other"),
])
def test_classify_single_pattern(exc_type, message, pattern):
    result = triage.classify_errors([group(exc_type, 10, exc_type, message)])
    assert result["pattern"] == pattern
    assert result["share"] == 1.0 and result["total"] == 10


def test_classify_weighted_by_count():
    groups = [group("a", 5, "KeyError", "x"), group("b", 95, "sqlalchemy.exc.OperationalError", "pool")]
    result = triage.classify_errors(groups)
    assert result["pattern"] == "database"
    assert result["share"] == 0.95
    assert result["by_pattern"] == {"database": 95, "other": 5}
    assert result["dominant"] == "sqlalchemy.exc.OperationalError"


def test_classify_nothing():
    assert triage.classify_errors([])["pattern"] == "none"


def test_classify_custom_patterns():
    result = triage.classify_errors([group("a", 3, "RedisError", "timeout")], {"cache": "redis"})
    assert result["pattern"] == "cache"


def test_onset_is_start_of_latest_run_above_threshold():
    points = [["t1", 0.2], ["t2", 0.01], ["t3", 0.06], ["t4", 0.3], ["t5", 0.2]]
    assert triage.error_onset(points, 0.05) == "t3"
    assert triage.error_onset(points[:2], 0.05) is None
    assert triage.error_onset([["t1", None], ["t2", 0.5]], 0.05) == "t2"


def test_onset_refined_by_the_first_error_logged_between_two_steps():
    points = [["2026-11-23T11:41:40.515Z", 0.0], ["2026-11-23T11:42:40.515Z", 0.01], ["2026-11-23T11:43:40.515Z", 0.4],
              ["2026-11-23T11:44:40.515Z", 0.45]]
    # 11:30 is an old sporadic error (before the last quiet step), 11:42:46 the burst's first.
    logged = ["2026-11-23T11:30:00Z", "2026-11-23T11:43:10Z", "2026-11-23T11:42:46.514Z"]
    assert triage.error_onset(points, 0.05, logged) == "2026-11-23T11:42:46.514Z"
    # Nothing logged inside the step: the crossing point stands.
    assert triage.error_onset(points, 0.05, ["2026-11-23T11:30:00Z"]) == "2026-11-23T11:43:40.515Z"
    # Errors from the very first point: anything logged up to it counts.
    assert triage.error_onset(points[2:], 0.05, logged) == "2026-11-23T11:30:00Z"


DEPLOYS = [
    {"host": "app1", "current": "v1.4.2", "previous": "v1.4.1", "deployed_at": "2026-11-23T09:00:00+00:00"},
    {"host": "app2", "current": "v1.4.2", "previous": "v1.4.1", "deployed_at": "2026-11-23T09:01:00+00:00"},
]


def test_correlation_found_when_deploy_shortly_before_onset():
    result = triage.deployment_correlation(DEPLOYS, "2026-11-23T09:10:00Z")
    assert result["correlated"] is True
    assert result["hosts"] == ["app1", "app2"]
    assert (result["release"], result["rollback_to"]) == ("v1.4.2", "v1.4.1")
    assert "10.0 min before" in result["reason"]


def test_no_correlation_when_deploy_long_before():
    result = triage.deployment_correlation(DEPLOYS, "2026-11-25T09:10:00Z", window_minutes=120)
    assert result["correlated"] is False and "outside the 120 min window" in result["reason"]


def test_no_correlation_when_deploy_after_onset_beyond_grace():
    result = triage.deployment_correlation(DEPLOYS, "2026-11-23T08:30:00Z", grace_minutes=5)
    assert result["correlated"] is False


def test_deploy_within_grace_after_onset_correlates():
    result = triage.deployment_correlation(DEPLOYS[:1], "2026-11-23T08:58:00Z", grace_minutes=5)
    assert result["correlated"] is True


def test_unknown_onset():
    assert triage.deployment_correlation(DEPLOYS, None)["reason"] == "error onset unknown"


def test_fleet_evidence_merges_and_lists_unchecked():
    evidence = [
        {"host": "app1", "errors": {"matched": 7, "groups": [group("db", 7, "OperationalError", "pool", "2026-11-23T09:05:00Z")]},
         "deployments": {"current": "v2", "previous": "v1", "deployed_at": "2026-11-23T09:00:00Z"}},
        {"host": "app2", "errors": {"matched": 3, "groups": [group("db", 3, "OperationalError", "pool", "2026-11-23T09:04:00Z")]},
         "deployments": {"failed": True, "msg": "path: releases directory /x does not exist"}},
        {"host": "app3", "errors": {"unreachable": True, "msg": "ssh: connect refused"},
         "deployments": {"unreachable": True, "msg": "ssh: connect refused"}},
    ]
    fleet = triage.fleet_evidence(evidence)
    assert fleet["matched"] == 10 and fleet["hosts_checked"] == ["app1", "app2"] and fleet["hosts_total"] == 3
    assert fleet["groups"][0]["count"] == 10 and fleet["groups"][0]["hosts"] == ["app1", "app2"]
    assert fleet["groups"][0]["first_seen"] == "2026-11-23T09:04:00Z"
    assert [d["host"] for d in fleet["deployments"]] == ["app1"]
    unchecked = {(u["what"], u["host"]) for u in fleet["unchecked"]}
    assert unchecked == {("recent deployments", "app2"), ("error logs", "app3"), ("recent deployments", "app3")}
    assert any("unreachable" in u["reason"] for u in fleet["unchecked"])


def test_fleet_evidence_counts_a_rollback_as_the_moment_of_deployment():
    evidence = [{"host": "app1", "errors": {"matched": 0, "groups": []},
                 "deployments": {"current": "v2", "previous": "v1", "deployed_at": "2026-11-20T09:00:00+00:00",
                                 "current_since": "2026-11-23T09:00:00+00:00"}}]
    assert triage.fleet_evidence(evidence)["deployments"][0]["deployed_at"] == "2026-11-23T09:00:00+00:00"


def test_a_rollback_minutes_after_the_onset_is_not_the_cause():
    # v1.4.2 broke things at 09:00:30; the runbook rolled back to v1.4.1 at 09:03 (made current again then).
    deploys = [{"host": "app1", "current": "v1.4.1", "previous": "v1.4.0", "deployed_at": "2026-11-23T09:03:00+00:00"}]
    result = triage.deployment_correlation(deploys, "2026-11-23T09:00:30Z")
    assert result["correlated"] is False
