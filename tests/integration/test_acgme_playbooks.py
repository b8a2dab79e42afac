"""The three ACGME runbook playbooks through ansible-playbook, on the lab's seeded schedule in a real PostgreSQL 15.

The seed is compliant; a careless edit puts one PGY-2 resident on every weekend day of four weeks (no day
off in 28 days, 84 h a week). ACGMEViolationDetected must find both violations as future ones, notify the
Program Director (recorded), propose covers, apply them with runbook_remediate and leave the schedule
compliant with every runbook documentation item filled; WorkHourThresholdApproaching and
RepeatedACGMEViolations run on the same data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.modules import acgme_compliance
from tests.integration.test_acgme_coverage import OVERWORKED, _seed
from tests.integration.test_acgme_postgres import _create_database, _drop_database
from tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]

REPO = Path(__file__).resolve().parents[2]
TODAY = datetime.now(timezone.utc).date()
START = TODAY - timedelta(days=TODAY.weekday()) - timedelta(days=21)  # a Monday three weeks ago: violations in the future


@pytest.fixture()
def scheduler_db(postgres_server):
    name = "acgme_playbooks"
    _create_database(postgres_server, name)
    seed = _seed()
    with postgres_server.connect(superuser=False, dbname=name) as conn:
        seed.write(conn, seed.generate(START), schema=True)
        conn.execute("""INSERT INTO assignments (block_id, person_id, rotation_template_id, role, created_by)
                        SELECT b.id, %s, 1, 'primary', 'careless-edit' FROM blocks b
                        WHERE b.date BETWEEN %s AND %s AND b.is_weekend
                          AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.block_id = b.id AND a.person_id = %s)""",
                     (OVERWORKED, TODAY - timedelta(days=13), TODAY + timedelta(days=14), OVERWORKED))
    yield name
    _drop_database(postgres_server, name)


def run_playbook(tmp_path: Path, server, database: str, playbook: str, **extra) -> tuple[subprocess.CompletedProcess, dict]:
    inventory = {"all": {"children": {"db": {"hosts": {"db1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "postgres_host": server.host, "postgres_port": server.port, "postgres_database": database,
        "postgres_user": server.app_user, "postgres_password": server.app_password}}}},
        "vars": {"prometheus_url": "http://127.0.0.1:9"}}}  # nothing listens: an unreachable Prometheus is a finding
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    variables = {"runbook_incident_dir": str(tmp_path / "incidents"), "ansible_python_interpreter": sys.executable,
                 "scheduler_timezone": "UTC", **extra}
    (tmp_path / "extra.json").write_text(json.dumps(variables))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "ANSIBLE_HOME": str(tmp_path / "ansible-home")}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.json"), "-c", "local",
            "-e", f"@{tmp_path / 'extra.json'}", str(REPO / "playbooks" / playbook)]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    records = sorted((tmp_path / "incidents").glob("*/incident.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(records[-1].read_text()) if records else {}
    return proc, record


def future_violations(monkeypatch, server, database):
    args = server.module_args(superuser=False, database=database)
    args.update({"source": "postgres", "timezone": "UTC", "date_from": (TODAY - timedelta(days=56)).isoformat()})
    result, failed = run_module(monkeypatch, acgme_compliance.main, args)
    assert not failed, result.get("msg")
    return [v for v in result["violations"] if v["status"] == "future"]


def test_violation_detected_investigates_notifies_and_prevents(monkeypatch, tmp_path, postgres_server, scheduler_db):
    assert {(v["rule"], v["person_id"]) for v in future_violations(monkeypatch, postgres_server, scheduler_db)} >= {
        ("one_day_off_in_7", OVERWORKED)}

    proc, record = run_playbook(tmp_path, postgres_server, scheduler_db, "acgme_violation_detected.yml",
                                alert={"labels": {"alertname": "ACGMEViolationDetected", "person_id": str(OVERWORKED), "severity": "critical"},
                                       "fingerprint": "acgme-8"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert record["kind"] == "acgme" and record["severity"] == "critical"
    assert int(record["decision"]["future"]) >= 1 and "one_day_off_in_7" in record["decision"]["rules"]
    assert any(n.get("template") == "acgme_notification" for n in record["notifications"])  # PD notified (channel unconfigured: skipped)
    assert record["actions"] == []  # investigation only: nothing applied
    assert any("runbook_remediate=true" in step for step in record["next_steps"])
    assert future_violations(monkeypatch, postgres_server, scheduler_db)  # untouched

    proc, record = run_playbook(tmp_path, postgres_server, scheduler_db, "acgme_violation_detected.yml", runbook_remediate=True,
                                alert={"labels": {"alertname": "ACGMEViolationDetected", "person_id": str(OVERWORKED), "severity": "critical"},
                                       "fingerprint": "acgme-8"})
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
