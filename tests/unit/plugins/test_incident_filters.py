"""Severity and escalation filters: the runbooks' tables and rules as data."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sre.runbooks.plugins.filter.incident import FilterModule

F = FilterModule().filters()


@pytest.mark.parametrize("level, response, channels", [
    ("critical", "Immediate (24/7)", ["pagerduty", "email", "slack", "statuspage"]),
    ("Warning", "Within 1 hour (business hours)", ["slack", "email"]),
    ("sev4", "Best effort", ["slack"]),
])
def test_alert_severity_table(level, response, channels):
    result = F["alert_severity"](level)
    assert result["response"] == response and result["channels"] == channels


def test_alert_severity_unknown_is_named():
    with pytest.raises(AnsibleFilterError, match="unknown severity 'urgent'"):
        F["alert_severity"]("urgent")


@pytest.mark.parametrize("facts, level, reason", [
    ({"system_unavailable": True}, 1, "system unavailable"),
    ({"response_time_seconds": 1.4}, 1, "response time 1.4 s > 1 s"),
    ({"alerts_firing": 3}, 1, "multiple alerts firing (3)"),
    ({"data_breach": True, "error_rate": 0.5}, 1, "data breach"),
    ({"accuracy": 0.71}, 2, "model accuracy drop: 0.71 < floor 0.8"),
    ({"error_rate": 0.12}, 2, "high error rate 12.0% > 5.0%"),
    ({"security_warnings": ["10 failed logins"]}, 2, "security warnings (10 failed logins)"),
    ({"error_rate": 0.01}, 3, "non-critical errors (1.0%)"),
    ({"alerts": [{"labels": {"severity": "warning"}}]}, 3, "warning alert firing"),
    ({"alerts_firing": 1}, 4, "single error alert"),
    ({"cosmetic_issues": True}, 4, "cosmetic issues"),
    ({"response_time_seconds": 0.2, "error_rate": 0}, 4, "no Severity 1–3 condition holds"),
])
def test_ml_severity_rules(facts, level, reason):
    result = F["ml_severity"](facts)
    assert result["level"] == level and result["name"] == f"sev{level}"
    assert reason in result["reasons"], result


def test_ml_severity_highest_wins_and_keeps_the_rest():
    result = F["ml_severity"]({"incorrect_predictions": True, "accuracy": 0.6, "error_rate": 0.02})
    assert result["level"] == 1 and result["alert_level"] == "critical"
    assert any("accuracy" in r for r in result["also"])


def test_ml_severity_thresholds_and_bad_input():
    assert F["ml_severity"]({"response_time_seconds": 1.4}, {"response_time_seconds": 2})["level"] == 4
    with pytest.raises(AnsibleFilterError, match="unknown fact"):
        F["ml_severity"]({"cpu_on_fire": True})
    with pytest.raises(AnsibleFilterError, match="error_rate must be a number"):
        F["ml_severity"]({"error_rate": "lots"})
    with pytest.raises(AnsibleFilterError, match="expected a dict"):
        F["ml_severity"]([])


def test_escalation_paths_and_chains():
    app = F["escalation_chain"]("application")
    assert [lvl["contact"] for lvl in app] == ["On-call Engineer", "Tech Lead"] and app[0]["via"] is None
    assert F["escalation_chain"]("database", after_hours=True)[0]["via"] == "PagerDuty"
    assert [lvl["contact"] for lvl in F["escalation_chain"]("technical")] == ["On-call Engineer", "System Administrator", "Technical Lead", "CTO"]
    assert [lvl["contact"] for lvl in F["escalation_chain"]("security", {})][-1] == "Legal Team"
    with pytest.raises(AnsibleFilterError, match="unknown issue type 'network'"):
        F["escalation_chain"]("network")


def test_next_escalation_walks_the_chain():
    done = []
    seen = []
    for _step in range(3):
        nxt = F["next_escalation"](done, "compliance")
        seen.append((nxt["contact"], nxt["exhausted"]))
        done.append({"path": nxt["path"], "contact": nxt["contact"]})
    assert seen == [("Program Director", False), ("ACGME Liaison", False), ("ACGME Liaison", True)]


def test_after_hours_and_time_helpers():
    assert F["is_after_hours"]("2026-11-23T10:00:00Z") is False  # Monday 10:00
    assert F["is_after_hours"]("2026-11-23T20:00:00Z") is True
    assert F["is_after_hours"]("2026-11-22T10:00:00Z") is True  # Sunday
    assert F["is_after_hours"]("2026-11-23T20:00:00Z", {"utc_offset_hours": -8}) is False
    assert F["incident_duration"]("2026-11-23T10:00:00Z", "2026-11-23T11:05:00+00:00") == "1 h 5 min"
    assert F["time_after"](30, "2026-11-23T10:00:00Z") == "2026-11-23T10:30:00+00:00"
    with pytest.raises(AnsibleFilterError, match="cannot read the time"):
        F["is_after_hours"]("yesterday")
