"""The rulebook's persistent dedup (sre.runbooks.incident_dedup) and the ansible.eda.alertmanager stand-in source."""

from __future__ import annotations

import asyncio
import json
import runpy
import socket
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _incident

REPO = Path(__file__).resolve().parents[3]
FILTER = REPO / "extensions" / "eda" / "plugins" / "event_filter" / "incident_dedup.py"
SOURCE = REPO / "rulebooks" / "sources" / "ansible.eda.alertmanager.py"


def load_filter() -> dict:
    """A fresh copy of the filter, as ansible-rulebook loads it (runpy): nothing survives in memory between loads."""
    return runpy.run_path(str(FILTER))


def event(status: str = "firing", fingerprint: str = "f00d", alertname: str = "HighErrorRate") -> dict:
    return {"alert": {"status": status, "fingerprint": fingerprint, "labels": {"alertname": alertname, "host": "app1"},
                      "annotations": {"playbook": "high_error_rate.yml"}}, "meta": {"endpoint": "alerts"}}


def test_first_firing_is_new_and_a_repeat_before_the_record_exists_is_starting(tmp_path):
    dedup = load_filter()["main"]
    first = dedup(event(), incident_dir=str(tmp_path))
    assert first["incident"] == {"dir": str(tmp_path), "key": "f00d", "state": "new", "path": ""}
    assert dedup(event(), incident_dir=str(tmp_path))["incident"]["state"] == "starting"
    # a restarted rulebook (a fresh load) still knows the run is starting
    assert load_filter()["main"](event(), incident_dir=str(tmp_path))["incident"]["state"] == "starting"
    # another alert (another fingerprint) is not held back
    assert dedup(event(fingerprint="beef"), incident_dir=str(tmp_path))["incident"]["state"] == "new"


def test_the_runbooks_incident_record_is_the_dedup_and_resolved_closes_it(tmp_path):
    dedup = load_filter()["main"]
    assert dedup(event(), incident_dir=str(tmp_path))["incident"]["state"] == "new"
    # the runbook opens its record with the fingerprint as dedup key (roles/incident: incident_dedup_key)
    directory, _record, joined, _changed = _incident.open_or_join(
        tmp_path, "HighErrorRate", "f00d", "critical", event()["alert"], "runbook", "HighErrorRate", "run1", False, False)
    assert not joined
    assert load_filter()["main"](event(), incident_dir=str(tmp_path))["incident"] == {
        "dir": str(tmp_path), "key": "f00d", "state": "open", "path": str(directory)}
    assert load_filter()["find_open"](tmp_path, "f00d") == _incident.find_open(tmp_path, "f00d") == directory
    resolved = dedup(event("resolved"), incident_dir=str(tmp_path))
    assert resolved["incident"]["state"] == "open" and resolved["incident"]["path"] == str(directory)
    assert not (tmp_path / ".eda-claims" / "f00d").exists()
    _incident.update(directory, {"status": "resolved"}, False)
    # closed: a resolved repeat has nothing to close, and the alert firing again is a new incident
    assert dedup(event("resolved"), incident_dir=str(tmp_path))["incident"]["state"] == "none"
    assert dedup(event(), incident_dir=str(tmp_path))["incident"]["state"] == "new"


def test_a_claim_whose_run_never_opened_a_record_expires(tmp_path):
    dedup = load_filter()["main"]
    assert dedup(event(), incident_dir=str(tmp_path), claim_seconds=60, now=1000.0)["incident"]["state"] == "new"
    assert dedup(event(), incident_dir=str(tmp_path), claim_seconds=60, now=1030.0)["incident"]["state"] == "starting"
    assert dedup(event(), incident_dir=str(tmp_path), claim_seconds=60, now=1061.0)["incident"]["state"] == "new"


def test_incident_dir_defaults_to_the_environment_and_non_alert_events_pass(tmp_path, monkeypatch):
    dedup = load_filter()["main"]
    monkeypatch.setenv("RUNBOOK_INCIDENT_DIR", str(tmp_path / "env"))
    assert dedup(event())["incident"]["dir"] == str(tmp_path / "env")
    payload = {"payload": {"alerts": []}, "meta": {}}
    assert dedup(dict(payload)) == payload
    # no fingerprint: the alert name is the key; unsafe characters never leave the claims directory
    assert dedup(event(fingerprint=""))["incident"]["key"] == "HighErrorRate"
    assert dedup(event(fingerprint="../../x"))["incident"]["state"] == "new"
    assert sorted(p.name for p in (tmp_path / "env" / ".eda-claims").iterdir()) == ["HighErrorRate", "f00d", "x"]


def test_unreadable_records_are_skipped(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "incident.json").write_text("{not json")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "incident.json").write_text("[]")
    assert load_filter()["main"](event(), incident_dir=str(tmp_path))["incident"]["state"] == "new"


# --- the ansible.eda.alertmanager stand-in: the same events as the collection's source

PAYLOAD = {"receiver": "eda-runbooks", "status": "firing", "alerts": [
    {"status": "firing", "labels": {"alertname": "HighErrorRate", "instance": "127.0.0.1:18001"}, "fingerprint": "a1"},
    {"status": "resolved", "labels": {"alertname": "LowMemory"}, "fingerprint": "b2"}]}


def test_stand_in_source_splits_the_payload_into_alert_events():
    source = runpy.run_path(str(SOURCE))
    options = source["options_from"]({})
    events = source["alert_events"](PAYLOAD, "alerts", {"X": "1"}, options)
    assert events[0] == {"payload": PAYLOAD, "meta": {"endpoint": "alerts", "headers": {"X": "1"}}}
    assert [e["alert"]["fingerprint"] for e in events[1:]] == ["a1", "b2"]
    assert events[1]["meta"] == {"endpoint": "alerts", "headers": {"X": "1"}, "hosts": ["127.0.0.1"]}
    assert events[2]["meta"]["hosts"] == []
    options = source["options_from"]({"skip_original_data": True, "data_host_path": "", "data_alerts_path": ""})
    assert source["alert_events"](PAYLOAD, "x", {}, options) == [{"alert": PAYLOAD, "meta": {"endpoint": "x", "headers": {}, "hosts": []}}]


def test_stand_in_source_serves_the_webhook():
    requests = pytest.importorskip("requests")
    source = runpy.run_path(str(SOURCE))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def scenario():
        queue: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(source["main"](queue, {"host": "127.0.0.1", "port": port, "skip_original_data": True}))
        loop = asyncio.get_running_loop()
        for _attempt in range(100):
            try:
                status = await loop.run_in_executor(None, lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=2))
                break
            except requests.ConnectionError:
                await asyncio.sleep(0.05)
        posted = await loop.run_in_executor(None, lambda: requests.post(f"http://127.0.0.1:{port}/alerts", json=PAYLOAD, timeout=5))
        bad = await loop.run_in_executor(None, lambda: requests.post(f"http://127.0.0.1:{port}/alerts", data="{", timeout=5))
        events = [queue.get_nowait() for _event in range(queue.qsize())]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return status, posted, bad, events

    status, posted, bad, events = asyncio.run(scenario())
    assert (status.status_code, status.text) == (200, "up")
    assert posted.status_code == 202 and bad.status_code == 400
    assert [e["alert"]["labels"]["alertname"] for e in events] == ["HighErrorRate", "LowMemory"]
    assert json.loads(json.dumps(events))[0]["meta"]["endpoint"] == "alerts"
