"""The incident record: open/join by dedup key, atomic merge, the report a person reads."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _incident as inc
from ansible_collections.sre.runbooks.plugins.modules import incident as incident_module
from tests.unit.plugins.modules.utils import run_module

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def open_incident(root, key="fp1", check=False, now=T0):
    return inc.open_or_join(root, "HighErrorRate", key, "critical", {"fingerprint": key}, "runbook", "HighErrorRate",
                            "run1", False, check, now=now)


def test_second_run_joins_open_incident(tmp_path):
    first_dir, first, joined, _changed = open_incident(tmp_path)
    assert not joined and first_dir.name == "HighErrorRate-20261123T090000Z"
    second_dir, second, joined, _changed = open_incident(tmp_path)
    assert joined and second_dir == first_dir
    assert [e["event"] for e in second["timeline"]] == ["opened", "joined"]
    assert len(second["runs"]) == 2


def test_other_dedup_key_or_resolved_opens_new(tmp_path):
    first_dir, _record, _joined, _changed = open_incident(tmp_path)
    other_dir, _record, joined, _changed = open_incident(tmp_path, key="fp2")
    assert not joined and other_dir != first_dir
    inc.update(first_dir, {"status": "resolved"}, False)
    third_dir, _record, joined, _changed = open_incident(tmp_path)
    assert not joined and third_dir not in (first_dir, other_dir)


def test_check_mode_writes_nothing(tmp_path):
    directory, record, _joined, _changed = open_incident(tmp_path / "incidents", check=True)
    assert record["status"] == "open"
    assert not directory.exists()


def test_merge_dedups_and_resolves(tmp_path):
    directory, _record, _joined, _changed = open_incident(tmp_path)
    finding = {"title": "Error types", "table": {"columns": ["count", "error"], "rows": [[3, "KeyError|x"]]}}
    record, changed = inc.update(directory, {"findings": [finding]}, False)
    assert changed and record["findings"] == [finding]
    record, changed = inc.update(directory, {"findings": [finding]}, False)
    assert not changed
    record, changed = inc.update(directory, {"status": "resolved"}, False)
    assert changed and record["resolved_at"]
    on_disk = json.loads((directory / "incident.json").read_text())
    assert on_disk == record
    report = (directory / "report.md").read_text()
    assert report.startswith("# HighErrorRate — resolved")
    assert "| 3 | KeyError\\|x |" in report


def test_unreadable_record_is_named(tmp_path):
    directory, _record, _joined, _changed = open_incident(tmp_path)
    (directory / "incident.json").write_text("{broken")
    with pytest.raises(inc.IncidentError, match="not valid JSON"):
        inc.update(directory, {"status": "resolved"}, False)


def test_alert_name_cannot_escape_directory(tmp_path):
    directory, _record, _joined, _changed = inc.open_or_join(tmp_path, "../../etc/x", "k", "info", {}, "", "t", "r", False, False, now=T0)
    assert directory.parent == tmp_path and ".." not in directory.name


def test_module_open_then_present(monkeypatch, tmp_path):
    result, failed = run_module(monkeypatch, incident_module.main, {
        "state": "open", "incident_dir": str(tmp_path), "alert_name": "SlowResponseTime", "severity": "warning"})
    assert not failed and result["joined"] is False
    result, failed = run_module(monkeypatch, incident_module.main, {
        "path": result["path"], "unchecked": [{"what": "Prometheus", "reason": "refused"}]})
    assert not failed and result["changed"] and result["record"]["severity"] == "warning"
    assert "## Could not check" in (tmp_path / result["id"] / "report.md").read_text()


def test_module_requires_path_for_present(monkeypatch):
    result, failed = run_module(monkeypatch, incident_module.main, {"findings": []})
    assert failed and "path" in result["msg"]


def test_report_follows_each_runbooks_documentation(tmp_path):
    acgme_dir, _record, _joined, _changed = inc.open_or_join(tmp_path, "ACGMEViolationDetected", "v1", "critical", {}, "", "ACGME",
                                                             "r", False, False, now=T0, kind="acgme")
    record, _changed = inc.update(acgme_dir, {"documentation": {"violation_details": "84 h in week 47", "affected_person": "PGY-2 #17"},
                                              "notifications": [{"time": "t1", "channel": "email", "status": "sent",
                                                                 "template": "acgme_notification"}]}, False)
    report = (acgme_dir / "report.md").read_text()
    assert "**Violation details:** 84 h in week 47" in report and "**Affected person:** PGY-2 #17" in report
    assert "**Justification (if override):** _not documented yet_" in report
    assert "**Program Director notification:** email sent at t1" in report
    ml_dir, _record, _joined, _changed = inc.open_or_join(tmp_path, "ModelAccuracy", "m1", "sev2", {}, "", "ML", "r", False, False,
                                                          now=T0, kind="ml")
    inc.update(ml_dir, {"documentation": {"root_cause": "stale preprocessor", "lessons_learned": "pin the preprocessor"},
                        "actions": [{"action": "restored backup_20261122", "result": "accuracy 0.86"}]}, False)
    report = (ml_dir / "report.md").read_text()
    for label in ("Incident timeline", "Actions taken", "Root cause", "Recovery steps", "Lessons learned"):
        assert f"**{label}:**" in report
    assert "**Recovery steps:** restored backup_20261122 (accuracy 0.86)" in report
    assert "## Post-mortem" in report  # Severity 2 counts as critical
    assert record["kind"] == "acgme" and (ml_dir / "report.html").is_file()


def test_old_records_are_upgraded_and_acknowledgement_kept(tmp_path):
    directory, _record, _joined, _changed = open_incident(tmp_path)
    old = json.loads((directory / "incident.json").read_text())
    for key in ("escalations", "documentation", "kind", "acknowledged_at"):
        old.pop(key)
    (directory / "incident.json").write_text(json.dumps(old))
    record, _changed = inc.update(directory, {"acknowledged": True, "escalations": [{"level": 1, "contact": "DBA"}]}, False, now=T0)
    first = record["acknowledged_at"]
    record, _changed = inc.update(directory, {"acknowledged": True}, False)
    assert record["acknowledged_at"] == first and record["escalations"][0]["contact"] == "DBA" and record["kind"] == "alert"


def test_chart_has_series_threshold_and_markers(tmp_path):
    directory, _record, _joined, _changed = open_incident(tmp_path)
    series = [["2026-11-23T08:50:00Z", 0.0], ["2026-11-23T09:05:00Z", 0.4], ["2026-11-23T09:30:00Z", None], ["2026-11-23T09:40:00Z", 0.01]]
    record, _changed = inc.update(directory, {"metric": {"name": "error ratio", "threshold": 0.05, "series": series},
                                              "actions": [{"time": "2026-11-23T09:10:00Z", "action": "rollback"}]}, False)
    svg = inc.render_chart(record)
    assert svg.count("<polyline") == 1 and 'class="threshold"' in svg and "threshold 5 %" in svg
    assert 'marker-start' in svg and 'marker-remediation' in svg
    assert inc.render_chart({**record, "metric": {"series": [["2026-11-23T09:00:00Z", 1]]}}) == ""


def test_unconfigured_channels_are_one_line_attempts_are_rows(tmp_path):
    directory, _record, _joined, _changed = open_incident(tmp_path)
    inc.update(directory, {"notifications": [
        {"time": "t1", "channel": "slack", "event": "update", "status": "skipped", "attempts": 0},
        {"time": "t2", "channel": "slack", "event": "resolve", "status": "skipped", "attempts": 0},
        {"time": "t3", "channel": "grafana", "event": "trigger", "status": "skipped", "attempts": 0},
        {"time": "t4", "channel": "email", "event": "update", "status": "failed", "attempts": 4, "error": "SMTP 451"},
    ]}, False)
    report = (directory / "report.md").read_text()
    assert "Not sent, channel not configured: slack (2), grafana (1)." in report
    assert "| t4 | email | update |  | failed | 4 | SMTP 451 |" in report and "| t1 |" not in report


def test_same_remediation_on_several_hosts_is_one_marker(tmp_path):
    directory, _record, _joined, _changed = open_incident(tmp_path)
    series = [["2026-11-23T08:50:00Z", 0.0], ["2026-11-23T09:30:00Z", 0.2]]
    record, _changed = inc.update(directory, {"metric": {"name": "m", "series": series}, "actions": [
        {"time": "2026-11-23T09:10:00Z", "host": "app1", "action": "rollback"},
        {"time": "2026-11-23T09:10:01Z", "host": "app2", "action": "rollback"},
        {"time": "2026-11-23T09:20:00Z", "host": "app1", "action": "restart"}]}, False, now=T0)
    svg = inc.render_chart(record)
    assert svg.count("marker-remediation") == 2 and svg.count(">rollback<") == 1


def test_actions_get_their_time_once_and_say_what_was_done(tmp_path):
    directory, _record, _joined, _changed = open_incident(tmp_path)
    action = {"action": "add index", "target": "PostgreSQL", "detail": "CREATE INDEX CONCURRENTLY a_b_idx ON public.a (b)", "changed": True}
    record, changed = inc.update(directory, {"actions": [action]}, False)
    assert changed and len(record["actions"]) == 1 and record["actions"][0]["time"]
    record, changed = inc.update(directory, {"actions": [action]}, False)  # the same action recorded again by the run
    assert not changed and len(record["actions"]) == 1
    report = (directory / "report.md").read_text()
    assert "**PostgreSQL** add index: CREATE INDEX CONCURRENTLY a_b_idx ON public.a (b)" in report


def test_disk_full_names_the_directory_and_leaves_no_half_record(tmp_path, monkeypatch):
    """ENOSPC: a new incident leaves no directory behind; an update leaves incident.json as it was, whole."""
    directory, _record, _joined, _changed = open_incident(tmp_path)
    before = (directory / "incident.json").read_text()

    def full(path, text, mode=0o640):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(inc, "write_file_atomically", full)
    with pytest.raises(inc.IncidentError, match=f"path: cannot write the incident record in {directory}: No space left on device"):
        inc.update(directory, {"summary": "more"}, False)
    assert (directory / "incident.json").read_text() == before
    with pytest.raises(inc.IncidentError, match="incident_dir: cannot write the incident record in .*nothing was recorded"):
        open_incident(tmp_path, key="fp2")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [directory.name]
