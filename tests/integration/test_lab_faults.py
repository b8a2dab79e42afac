"""Every fault switch of the lab makes its alert fire in Prometheus (`/api/v1/alerts`), and `off` undoes it.

One lab for the module (its own state dir and moved ports); the faults run in three groups that do not
disturb each other's signals, each group switched on, its alerts awaited firing, then switched off.
The ACGME fault is also checked against the acgme_compliance module reading the lab's PostgreSQL: the
module must find exactly the violations the fault says it planted.
"""

from __future__ import annotations

import json
import time

import pytest

from ansible_collections.sre.runbooks.plugins.modules import acgme_compliance, pg_slow_queries
from tests.integration.test_lab import HTTP, Lab, _pick_offset
from tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.integration

FIRING_TIMEOUT = 90.0

# (lab fault arguments, {alertname: labels the firing alert must carry})
GROUPS = {
    "requests_security_db_model": [
        (["error_burst", "--hosts", "app1", "--rate", "0.6"], {"HighErrorRate": {"host": "app1"}}),
        (["slow_responses", "--hosts", "app2"], {"SlowResponseTime": {"host": "app2"}, "HighLatencyP95": {"host": "app2"}}),
        (["auth_spray", "--mode", "accounts"], {"FailedAuthenticationSpike": {}, "SuspiciousActivityDetected": {"reason": "password_spray"}}),
        (["acgme_violation"], {"ACGMEViolationDetected": {"rule": "pgy1_supervision"}}),
        (["pg_long_queries"], {"PostgreSQLLongRunningQueries": {}}),
        (["pg_idle_in_transaction"], {"PostgreSQLIdleInTransaction": {}}),
        (["bad_model"], {"ModelQualityBelowFloor": {"metric": "accuracy"}}),
        (["drift"], {"FeatureDrift": {}}),
        (["leaked_credential"], {"HeartDiseaseAuthFailureSpike": {}}),
        (["large_export"], {"LargeDataExport": {"user_id": "1"}}),
        (["ml_latency"], {"HeartDiseaseSlowPredictions": {"job": "heart-disease-api"}}),
    ],
    "resources_cache_probes": [
        (["pool_leak", "--hosts", "app1"], {"DatabaseConnectionPoolExhaustion": {"host": "app1"}}),
        (["memory_leak", "--hosts", "app2"], {"LowMemory": {"host": "app2"}}),
        (["cache_flush"], {"LowCacheHitRate": {}}),
        (["corrupt_model"], {"ModelLoadFailure": {}}),
        # FailedAuthenticationSpike for this mode is proven alone (molecule/alerts_security test_credential_stuffing):
        # here app1's leaked pool and app2's scans hold each login for seconds, under the rule's 1 failure/s
        (["auth_spray", "--mode", "ips"], {"SuspiciousActivityDetected": {"reason": "credential_stuffing"}}),
        # the activity feed's sequential scans slow app2's queries (app1's pool leaks in this group)
        (["missing_index", "--hosts", "app2"], {"SlowDatabaseQueries": {"host": "app2"}}),
        (["acgme_repeated"], {"RepeatedACGMEViolations": {}}),
        (["suspicious_activity"], {"SuspiciousActivityDetected": {"reason": "injection_probe"}}),
        (["work_hours"], {"WorkHourThresholdApproaching": {}, "ACGMEWorkHoursWarning": {}, "ACGMEWorkHoursViolation": {}}),
    ],
    "exhaustion_and_crashes": [
        # two hashing threads (the default): the lab's HighCPUUsage reads the CPU the backend used or waited for, so
        # they fire it however loaded the shared machine is
        (["cpu_burn", "--hosts", "app1"], {"HighCPUUsage": {"host": "app1"}}),
        (["service_crash", "--hosts", "app2"], {"ServiceDown": {"job": "residency-scheduler-backend", "host": "app2"}}),
        (["pg_connections"], {"PostgreSQLHighConnections": {}}),
        (["ml_crash"], {"ServiceDown": {"job": "heart-disease-api"}}),
    ],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = Lab(tmp_path_factory.mktemp("lab-faults"), _pick_offset())
    result = the_lab.run("up")
    try:
        assert result.returncode == 0, f"lab up failed:\n{result.stdout}\n{result.stderr}"
        yield the_lab
    finally:
        down = the_lab.run("down")
        assert down.returncode == 0, down.stderr


def firing(lab: Lab) -> list[dict]:
    response = HTTP.get(f"{lab.prometheus}/api/v1/alerts", timeout=5)
    response.raise_for_status()
    return [a for a in response.json()["data"]["alerts"] if a["state"] == "firing"]


def switch(lab: Lab, args: list[str], action: str) -> str:
    result = lab.run("fault", args[0], action, *args[1:], timeout=180)
    assert result.returncode == 0, f"lab fault {args[0]} {action}: {result.stdout}{result.stderr}"
    return result.stdout


def acgme_check(lab: Lab) -> dict:
    secrets = json.loads((lab.state_dir / "secrets.json").read_text(encoding="utf-8"))
    args = {"source": "postgres", "timezone": "UTC", "host": "127.0.0.1", "port": 15432 + lab.offset,
            "database": "residency_scheduler", "user": "scheduler", "password": secrets["db_password"], "sslmode": "disable"}
    mp = pytest.MonkeyPatch()
    try:
        result, failed = run_module(mp, acgme_compliance.main, args)
    finally:
        mp.undo()
    assert not failed, result.get("msg")
    return result


def slow_query_candidates(lab: Lab, statement: str) -> list[dict]:
    """pg_slow_queries (as the slow-query runbook runs it, as the application's role) explaining STATEMENT."""
    secrets = json.loads((lab.state_dir / "secrets.json").read_text(encoding="utf-8"))
    args = {"host": "127.0.0.1", "port": 15432 + lab.offset, "database": "residency_scheduler", "user": "scheduler",
            "password": secrets["db_password"], "sslmode": "disable", "sections": ["tables"], "explain": statement}
    mp = pytest.MonkeyPatch()
    try:
        result, failed = run_module(mp, pg_slow_queries.main, args)
    finally:
        mp.undo()
    assert not failed, result.get("msg")
    assert "public.audit_log_archive" in result["missing_index_suspects"]
    return result["explain"]["index_candidates"]


@pytest.mark.parametrize("group", list(GROUPS))
def test_each_fault_fires_its_alert(lab, group):
    faults = GROUPS[group]
    # alerts of one name are told apart by their labels: several faults may expect the same name
    expected_all = [(name, labels) for _args, alerts in faults for name, labels in alerts.items()]
    if group == "requests_security_db_model":
        assert acgme_check(lab)["violations"] == [], "the seeded schedule must be compliant before the fault"
    outputs = {}
    try:
        for args, _alerts in faults:
            outputs[args[0]] = switch(lab, args, "on")
        # each expected alert must be seen firing at some point (one-shot faults fire and resolve by themselves)
        deadline = time.monotonic() + FIRING_TIMEOUT
        left = list(expected_all)
        while left and time.monotonic() < deadline:
            alerts = firing(lab)
            left = [(name, labels) for name, labels in left
                    if not any(a["labels"]["alertname"] == name and all(a["labels"].get(k) == v for k, v in labels.items()) for a in alerts)]
            if left:
                time.sleep(2)
        assert not left, f"not firing within {FIRING_TIMEOUT:.0f}s: {left}"
        if "missing_index" in outputs:
            planted = json.loads(outputs["missing_index"].split(": ", 1)[1])
            assert [(c["name"], c["exists"]) for c in slow_query_candidates(lab, planted["statement"])] == [
                ("audit_log_archive_occurred_at_idx", False)]
        if "acgme_violation" in outputs:
            # Alertmanager routes it to the compliance receiver and, being critical, pages too
            def routed():
                notes = HTTP.get(f"{lab.webhook}/notifications", timeout=5).json()
                return {n["receiver"] for n in notes if any(a["labels"].get("alertname") == "ACGMEViolationDetected" for a in n["alerts"])}
            deadline = time.monotonic() + 30
            while not {"compliance-alerts", "critical-alerts"} <= routed() and time.monotonic() < deadline:
                time.sleep(2)
            assert {"compliance-alerts", "critical-alerts"} <= routed()
            planted = json.loads(outputs["acgme_violation"].split(": ", 1)[1])["violations"]
            found = acgme_check(lab)["violations"]
            assert sorted((v["rule"], int(v["person_id"])) for v in found) == sorted((p["rule"], p["person_id"]) for p in planted)
            assert len(planted) >= 3
    finally:
        for args, _alerts in faults:
            hosts = args[args.index("--hosts"):args.index("--hosts") + 2] if "--hosts" in args else []
            off = lab.run("fault", args[0], "off", *hosts, timeout=180)
            assert off.returncode == 0, f"lab fault {args[0]} off: {off.stdout}{off.stderr}"
    assert expected_all  # every group names its alerts


def test_faults_are_off_and_the_fleet_healthy_again(lab):
    status = lab.run("status", "--json")
    data = json.loads(status.stdout)
    assert status.returncode == 0, [s for s in data.get("services", []) if not s.get("healthy")]
    assert not [s for s in data.get("services", []) if s.get("kind") == "fault"], "a fault generator is still running"
    for leftover in ("acgme_fault.json", "acgme_repeated_fault.json", "work_hours_fault.json", "missing_index_fault.json"):
        assert not (lab.state_dir / leftover).exists(), f"{leftover}: a schedule fault was not undone"
    assert acgme_check(lab)["violations"] == []


def test_unknown_fault_is_named(lab):
    result = lab.run("fault", "no_such_fault", "on")
    assert result.returncode != 0 and "no_such_fault" in result.stderr
