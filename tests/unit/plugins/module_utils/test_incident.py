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
