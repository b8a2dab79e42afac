"""The three ACGME runbook playbooks through ansible-playbook, on the lab's seeded schedule in a real PostgreSQL 15.

The seed is compliant; a careless edit puts one PGY-2 resident on every weekend day of four weeks (no day
off in 28 days, 84 h a week). ACGMEViolationDetected must find both violations as future ones, notify the
Program Director (recorded), propose covers, apply them with runbook_remediate and leave the schedule
compliant with every runbook documentation item filled; WorkHourThresholdApproaching and
RepeatedACGMEViolations run on the same data.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.modules import acgme_compliance
from tests.integration._playbooks import local_host, run_playbook as run
from tests.integration.test_acgme_coverage import OVERWORKED, seeded_with_careless_edit
from tests.integration.test_acgme_postgres import _drop_database
from tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]

TODAY = datetime.now(timezone.utc).date()
START = TODAY - timedelta(days=TODAY.weekday()) - timedelta(days=21)  # a Monday three weeks ago: violations in the future


@pytest.fixture()
def scheduler_db(postgres_server):
    name = "acgme_playbooks"
    seeded_with_careless_edit(postgres_server, name, START, TODAY - timedelta(days=13), TODAY + timedelta(days=14))
    yield name
    _drop_database(postgres_server, name)


NEXT_MONDAY = START + timedelta(days=28)


@pytest.fixture()
def future_edit_db(postgres_server):
    """The careless edit on the four weekends from next Monday: every shift of it is still movable, whatever the
    weekday today (an edit reaching into the past can leave a 28-day window no future change can repair)."""
    name = "acgme_playbooks_future"
    seeded_with_careless_edit(postgres_server, name, START, NEXT_MONDAY, NEXT_MONDAY + timedelta(days=27))
    yield name
    _drop_database(postgres_server, name)


def run_playbook(tmp_path: Path, server, database: str, playbook: str, **extra) -> tuple[subprocess.CompletedProcess, dict]:
    inventory = {"all": {"children": {"db": {"hosts": {"db1": local_host(
        postgres_host=server.host, postgres_port=server.port, postgres_database=database,
        postgres_user=server.app_user, postgres_password=server.app_password)}}},
        "vars": {"prometheus_url": "http://127.0.0.1:9"}}}  # nothing listens: an unreachable Prometheus is a finding
    return run(tmp_path, playbook, inventory, scheduler_timezone="UTC", **extra)


def future_violations(monkeypatch, server, database):
    args = server.module_args(superuser=False, database=database)
    args.update({"source": "postgres", "timezone": "UTC", "date_from": (TODAY - timedelta(days=56)).isoformat()})
    result, failed = run_module(monkeypatch, acgme_compliance.main, args)
    assert not failed, result.get("msg")
    return [v for v in result["violations"] if v["status"] == "future"]


def test_violation_detected_investigates_notifies_and_prevents(monkeypatch, tmp_path, postgres_server, future_edit_db):
    scheduler_db = future_edit_db
    horizon = {"acgme_future_days": 42}  # the edit's last weekend is up to 35 days ahead
    assert {(v["rule"], v["person_id"]) for v in future_violations(monkeypatch, postgres_server, scheduler_db)} >= {
        ("one_day_off_in_7", OVERWORKED)}

    proc, record = run_playbook(tmp_path, postgres_server, scheduler_db, "acgme_violation_detected.yml", **horizon,
                                alert={"labels": {"alertname": "ACGMEViolationDetected", "person_id": str(OVERWORKED), "severity": "critical"},
                                       "fingerprint": "acgme-8"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert record["kind"] == "acgme" and record["severity"] == "critical"
    assert int(record["decision"]["future"]) >= 1 and "one_day_off_in_7" in record["decision"]["rules"]
    assert any(n.get("template") == "acgme_notification" for n in record["notifications"])  # PD notified (channel unconfigured: skipped)
    assert record["actions"] == []  # investigation only: nothing applied
    assert any("runbook_remediate=true" in step for step in record["next_steps"])
    assert future_violations(monkeypatch, postgres_server, scheduler_db)  # untouched

    alert = {"labels": {"alertname": "ACGMEViolationDetected", "person_id": str(OVERWORKED), "severity": "critical"},
             "fingerprint": "acgme-8"}
    proc, record = run_playbook(tmp_path, postgres_server, scheduler_db, "acgme_violation_detected.yml", runbook_remediate=True,
                                alert=alert, **horizon)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert len(record["runs"]) == 2  # the second run joined the open incident
    assert [a for a in record["actions"] if a["action"] == "schedule change"], proc.stdout[-6000:]
    assert future_violations(monkeypatch, postgres_server, scheduler_db) == []
    documentation = record["documentation"]
    assert OVERWORKED and str(OVERWORKED) in documentation["affected_person"]
    assert "one_day_off_in_7" in documentation["violation_details"] or "free" in documentation["violation_details"]
    assert documentation["corrective_action"].startswith("Schedule changed")
    report = (Path(record["path"]) / "report.md").read_text() if record.get("path") else \
        next((tmp_path / "incidents").glob("*/report.md")).read_text()
    assert "Program Director notification" in report and "Corrective action taken" in report


def test_work_hours_approaching_proposes_cover_for_the_latest_shifts(monkeypatch, tmp_path, postgres_server, scheduler_db):
    proc, record = run_playbook(tmp_path, postgres_server, scheduler_db, "work_hour_threshold_approaching.yml",
                                alert={"labels": {"alertname": "WorkHourThresholdApproaching", "person_id": str(OVERWORKED)}})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert record["severity"] == "warning"
    hours = [f for f in record["findings"] if f["title"].startswith("Hours this week")][0]
    assert hours["table"]["rows"] and float(hours["table"]["rows"][0][3]) >= 75
    assert [f for f in record["findings"] if f["title"].startswith("Proposed schedule change")]


def test_repeated_violations_pulls_history_and_pattern(monkeypatch, tmp_path, postgres_server, scheduler_db):
    proc, record = run_playbook(tmp_path, postgres_server, scheduler_db, "repeated_acgme_violations.yml",
                                alert={"labels": {"alertname": "RepeatedACGMEViolations", "person_id": str(OVERWORKED)}})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    pattern = record["decision"]["pattern"]
    assert pattern["count"] >= 1 and "one_day_off_in_7" in pattern["by_rule"]
    assert pattern["load"]["peers"] == 6 and pattern["load"]["ratio_to_peers"] > 1
    assert any("Prometheus" in u["what"] for u in record["unchecked"])  # the app's own counts could not be compared
    assert any(e for e in record.get("escalations", []))
