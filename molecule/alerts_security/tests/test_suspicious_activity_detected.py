"""SuspiciousActivityDetected: injection, traversal and script probes classified, the source blocked, evidence kept."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from harness import clear_app_denylist, fault, login_status, security_state, wait_for_value

PLAYBOOK = "suspicious_activity_detected.yml"
EVENTS = 'sum(increase(suspicious_activity_total{job="residency-scheduler-backend",reason="injection_probe"}[1m]))'
PROBER = "203.0.113.99"  # the lab's prober (X-Forwarded-For)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_suspicious_activity_detected(runbook):
    before = security_state()
    since = _now()
    try:
        with fault("suspicious_activity"):
            wait_for_value(EVENTS, lambda v: v >= 3, "suspicious events")
            time.sleep(3)
            window = {"security_triage_since": since, "security_triage_until": _now()}
            dry = runbook(PLAYBOOK, remediate=False, **window)
            assert dry.ok, dry.output[-3000:]
            assert security_state() == before, "remediation off changed something"
            assert dry.decision["confirmed_malicious"] == [PROBER]
            assert dry.decision["block"] == [PROBER]
            assert {"sql_injection", "path_traversal", "script_injection"} <= set(dry.decision["classes"]), dry.decision["classes"]
            evidence = sorted(Path(dry.record["path"], "evidence").glob("*.log"))
            assert [p.name for p in evidence] == ["app1-suspicious_activity.log", "app2-suspicious_activity.log"]
            lines = [line for p in evidence for line in p.read_text().splitlines()]
            assert lines and all("suspicious_activity" in line or PROBER in line for line in lines)
            assert any("UNION SELECT" in line for line in lines) and any("../" in line for line in lines)

            run = runbook(PLAYBOOK, remediate=True, **window)
            assert run.ok, run.output[-3000:]
            assert "sql_injection" in run.decision["cause"] and "path_traversal" in run.decision["cause"]
            assert "sql_injection" in run.report
            after = security_state()
            assert after["denylist"] == {"app1": [PROBER], "app2": [PROBER]}
            assert after["users"] == before["users"], "no account acted in the probes: none is locked"
            time.sleep(1.5)
            for host in ("app1", "app2"):
                assert login_status(host, "nobody@residency.lab", "x", client=PROBER) == 403
            assert run.decision["recovery"] == "recovered", run.decision
            assert any(e["path"] == "security" for e in run.record.get("escalations", []))

            rerun = runbook(PLAYBOOK, remediate=True, **window)
            assert rerun.ok, rerun.output[-3000:]
            assert security_state() == after, "the rerun changed something"
            assert not rerun.fleet_changed and rerun.actions == []
    finally:
        clear_app_denylist()
