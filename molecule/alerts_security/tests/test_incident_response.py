"""The general incident response: acknowledge, assess (the service up, degraded or down), communicate, name and run
the alert's own runbook, verify from Prometheus, resolve or escalate along the issue type's path, document."""

from __future__ import annotations

from harness import wait_for_value


def test_incident_response_dispatches_and_resolves(runbook):
    # The security tests before this one log suspicious activity: the alert must be over before this run can see it
    # resolved (its expression looks back one minute).
    wait_for_value('count(ALERTS{alertname="SuspiciousActivityDetected"}) or vector(0)', lambda v: v == 0,
                   "SuspiciousActivityDetected no longer active", timeout=150)
    alert = {"labels": {"alertname": "SuspiciousActivityDetected", "severity": "critical"}, "annotations": {}}
    run = runbook("incident_response.yml", remediate=False, alert=alert, incident_response_dispatch=True)
    assert run.ok, run.output[-3000:]
    record = run.record
    assert record["decision"]["alert_runbook"] == "suspicious_activity_detected.yml"
    assert record["decision"]["issue_type"] == "security"
    assert record["decision"]["service_state"] == "up"
    assert record["decision"]["dispatched"] == "ran suspicious_activity_detected.yml (exit 0)"
    assert record["decision"]["alert_active"] is False
    assert record["status"] == "resolved"
    assert any(step.startswith("Follow the alert runbook: ansible-playbook playbooks/suspicious_activity_detected.yml") for step in record["next_steps"])
    # The dispatched runbook joined the same incident (same alert) and added its own evidence.
    assert any(f["title"].startswith("Suspicious activity details") for f in record["findings"]), record["findings"]
