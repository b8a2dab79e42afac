"""After the runbook: the report names the cause, the bad release is rolled back, the errors stopped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import testinfra

testinfra_hosts = ["local://"]

INCIDENTS = Path(os.environ["RUNBOOK_INCIDENT_DIR"])
LAB = Path(os.environ["LAB_STATE_DIR"])


@pytest.fixture(name="record")
def record_fixture():
    # converge resolves the incident; the idempotence run then finds nothing open and opens its own.
    records = sorted(INCIDENTS.glob("HighErrorRate-*/incident.json"))
    assert records, f"no incident record under {INCIDENTS}"
    first = records[0]
    return json.loads(first.read_text()), first.parent / "report.md"


def test_report_names_error_type_and_endpoint(record):
    data, report = record
    text = report.read_text()
    assert data["decision"]["error_pattern"] == "database"
    assert "OperationalError" in data["decision"]["dominant_error"]
    assert "/api/v1/schedules" in data["decision"]["affected_endpoints"]
    assert "OperationalError" in text and "/api/v1/schedules" in text


def test_deployment_correlated_and_rolled_back(host, record):
    data, _report = record
    assert data["decision"]["deployment_correlated"] in (True, "True")
    assert data["decision"]["rollback_to"] == "v1.4.1"
    for app in ("app1", "app2"):
        # inside the app host, over SSH with the lab's ssh config: the real system's path
        app_host = testinfra.get_host(f"ssh://{app}", ssh_config=str(LAB / "ssh" / "config"))
        link = app_host.file("/srv/residency-scheduler/releases/current")
        assert link.is_symlink and link.linked_to == "/srv/residency-scheduler/releases/v1.4.1"
        assert app_host.service("residency-scheduler-backend").is_running
    assert host.file(str(LAB / "hosts" / "app1" / "srv" / "releases" / "current")).linked_to.endswith("v1.4.1")
    assert any("rolled back v1.4.2 to v1.4.1" in action["action"] for action in data["actions"])


def test_error_rate_recovered_and_incident_resolved(record):
    data, _report = record
    assert data["status"] == "resolved", data["timeline"]
    assert any(event["event"] == "recovered" for event in data["timeline"])


def test_rerun_changed_nothing():
    records = sorted(INCIDENTS.glob("HighErrorRate-*/incident.json"))
    assert len(records) == 2, records
    rerun = json.loads(records[1].read_text())
    assert rerun["actions"] == [] and rerun["decision"]["deployment_correlated"] in (False, "False")
    assert rerun["decision"]["still_failing"] in (False, "False")  # the ratio is back under 5 %: nothing to roll back


def test_investigation_after_recovery_changes_nothing(runbook):
    """Once more through the harness (-vvv, every lab secret searched in the output, the record and notifications)."""
    run = runbook("high_error_rate.yml", remediate=False)
    assert run.ok, run.output[-3000:]
    assert run.actions == [] and not run.fleet_changed
    assert run.decision["still_failing"] in (False, "False"), run.decision
