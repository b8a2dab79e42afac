"""The acgme_compliance module: options in, violations out, errors as fail_json naming the option."""

from __future__ import annotations

from ansible_collections.sre.runbooks.plugins.modules import acgme_compliance

from ansible_collections.sre.runbooks.tests.unit.plugins.modules.utils import run_module

PEOPLE = [{"id": 7, "name": "Avery Mensah", "type": "resident", "pgy_level": 1}, {"id": 21, "name": "Dr. Marquez", "type": "faculty"}]
SHIFTS = [
    {"person_id": 7, "start": "2026-03-07T07:00:00", "end": "2026-03-08T12:00:00", "kind": "call"},  # 28 h real (DST)
    {"person_id": 7, "start": "2026-03-08T20:00:00", "end": "2026-03-08T23:00:00", "kind": "home_call", "worked": True, "id": "hc-1"},
    {"person_id": 21, "start": "2026-03-07T07:00:00", "end": "2026-03-08T12:00:00", "kind": "call"},
]


def test_shifts_source(monkeypatch):
    result, failed = run_module(monkeypatch, acgme_compliance.main, {
        "people": PEOPLE, "shifts": SHIFTS, "timezone": "America/New_York", "as_of": "2026-03-08T21:00:00-04:00"})
    assert not failed and result["changed"] is False
    # 12:00 -> 20:00 is 8 h of rest after a 28 h call (real time across DST); over by as_of, so historical.
    # The worked home call is not on-site work, so it needs no faculty cover.
    assert [(v["rule"], v["value"], v["status"], v["shift_ids"]) for v in result["violations"]] == [
        ("rest_14h_after_24h_call", 8.0, "historical", [0, "hc-1"])]
    assert result["summary"]["by_rule"]["continuous_24h_plus4"] == 0
    assert result["hours"][0]["total_hours"] == 31.0


def test_check_mode_and_no_hours(monkeypatch):
    result, failed = run_module(monkeypatch, acgme_compliance.main, {
        "people": PEOPLE, "shifts": SHIFTS, "timezone": "America/New_York", "include_hours": False, "_ansible_check_mode": True,
        "rules": ["continuous_24h_plus4"]})
    assert not failed and result["hours"] == [] and result["violations"] == []
    assert result["summary"]["rules"] == ["continuous_24h_plus4"]


def test_errors_name_the_option(monkeypatch):
    result, failed = run_module(monkeypatch, acgme_compliance.main, {"people": PEOPLE, "shifts": SHIFTS})
    assert failed and result["msg"].startswith("shifts[0].start: '2026-03-07T07:00:00' has no UTC offset")
    result, failed = run_module(monkeypatch, acgme_compliance.main, {"people": PEOPLE, "shifts": SHIFTS, "rules": ["weekly_60h"]})
    assert failed and "rules" in result["msg"]
    result, failed = run_module(monkeypatch, acgme_compliance.main, {"shifts": SHIFTS})
    assert failed and "people" in result["msg"]


def test_postgres_needs_a_timezone_before_connecting(monkeypatch):
    result, failed = run_module(monkeypatch, acgme_compliance.main, {"source": "postgres", "host": "127.0.0.1", "port": 1})
    assert failed and result["msg"].startswith("timezone: required with source=postgres")
    result, failed = run_module(monkeypatch, acgme_compliance.main, {"source": "postgres", "timezone": "UTC", "people": PEOPLE})
    assert failed and "not used with source=postgres" in result["msg"]


def test_postgres_unreachable_names_host(monkeypatch):
    result, failed = run_module(monkeypatch, acgme_compliance.main, {
        "source": "postgres", "timezone": "UTC", "host": "127.0.0.1", "port": 1, "password": "s3cret-value", "connect_timeout": 2})
    assert failed and result["msg"].startswith("host:") and result.get("option") == "host"
    assert "s3cret-value" not in str(result)
