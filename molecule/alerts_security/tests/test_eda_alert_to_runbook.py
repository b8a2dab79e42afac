"""Alerts start the runbooks, for real: fault → Prometheus → Alertmanager → ansible-rulebook → playbook → report.

ansible-rulebook runs rulebooks/alertmanager.yml with the table of rulebooks/alert_runbooks.yml; mon1's
Alertmanager gets prometheus/alertmanager.yml's eda-runbooks route and receiver pointed at it (the people's
receivers stay the lab's webhook stand-in). An error burst on app1 fires HighErrorRate, whose runbook
(high_error_rate.yml, investigation only) must start with the alert and leave its incident report; the same alert
delivered again while the incident is open starts nothing; the resolved notification closes the incident.
The bounds measured (alert firing → playbook start → report, fault off → incident closed) are printed (-s).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from datetime import datetime
from pathlib import Path

import requests
import yaml

from harness import BIN, INCIDENTS, PORT_OFFSET, REPO, fault, free_port, lab_ssh, wait_for_alert  # pylint: disable=import-error

ALERTMANAGER_URL = f"http://127.0.0.1:{19093 + PORT_OFFSET}"
AM_CONFIG = "/etc/alertmanager/alertmanager.yml"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _wait(predicate, what: str, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _records(incidents: Path) -> list[dict]:
    out = []
    for path in sorted(incidents.glob("*/incident.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written
        record["path"] = str(path.parent)
        out.append(record)
    return out


def _alertmanager_config(original: dict, rulebook_url: str) -> dict:
    """The lab's routing tree with prometheus/alertmanager.yml's EDA route first (shorter waits for a test)."""
    shipped = yaml.safe_load((REPO / "prometheus" / "alertmanager.yml").read_text(encoding="utf-8"))
    eda_route = next(r for r in shipped["route"]["routes"] if r["receiver"] == "eda-runbooks")
    eda_receiver = next(r for r in shipped["receivers"] if r["name"] == "eda-runbooks")
    assert eda_route.get("continue") is True and eda_receiver["webhook_configs"][0]["send_resolved"] is True
    eda_receiver = {**eda_receiver, "webhook_configs": [{**eda_receiver["webhook_configs"][0], "url": rulebook_url}]}
    config = json.loads(json.dumps(original))
    config["route"]["routes"] = [{**eda_route, "group_wait": "1s", "group_interval": "5s"}] + config["route"]["routes"]
    config["receivers"].append(eda_receiver)
    return config


def _put_alertmanager_config(config: dict) -> None:
    text = json.dumps(config, indent=2)
    lab_ssh("mon1", f"printf %s {shlex.quote(text)} > {AM_CONFIG}.new && mv {AM_CONFIG}.new {AM_CONFIG}")
    requests.post(f"{ALERTMANAGER_URL}/-/reload", timeout=10).raise_for_status()
    status = requests.get(f"{ALERTMANAGER_URL}/api/v2/status", timeout=10).json()
    assert ("eda-runbooks" in status["config"]["original"]) == any(r["name"] == "eda-runbooks" for r in config["receivers"])


def _rulebook_command(vars_file: Path) -> list[str]:
    command = [str(BIN / "ansible-rulebook"), "--rulebook", str(REPO / "rulebooks" / "alertmanager.yml"),
               "--vars", str(vars_file), "--inventory", str(REPO / "inventories" / "lab"), "-v"]
    eda = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "list", "ansible.eda"], capture_output=True,
                         text=True, check=False, env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")})
    if "ansible.eda" not in eda.stdout:  # no Galaxy here: the stand-in with the same contract
        command += ["--source-dir", str(REPO / "rulebooks" / "sources")]
    return command


def test_alert_starts_its_runbook_once_and_resolved_closes_it(tmp_path):
    incidents = INCIDENTS / f"eda-{tmp_path.name}"
    port = free_port()
    variables = yaml.safe_load((REPO / "rulebooks" / "alert_runbooks.yml").read_text(encoding="utf-8"))
    # Only HighErrorRate may start a run here: an alert left firing by another test of the scenario (the ACGME
    # rules look back an hour) must not start its runbook into this test's incident directory.
    variables.update(eda_alertmanager_port=port, runbook_playbook_dir=str(REPO / "playbooks"), alert_runbook_names=["HighErrorRate"],
                     eda_resolve_playbook=str(REPO / "rulebooks" / "playbooks" / "resolve_incident.yml"))
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(yaml.safe_dump(variables), encoding="utf-8")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
           "RUNBOOK_INCIDENT_DIR": str(incidents), "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    if not env.get("JAVA_HOME") and Path(JAVA_HOME).is_dir():
        env["JAVA_HOME"] = JAVA_HOME
    log_path = tmp_path / "rulebook.log"
    original = json.loads(lab_ssh("mon1", f"cat {AM_CONFIG}"))
    with open(log_path, "w", encoding="utf-8") as log:
        rulebook = subprocess.Popen(_rulebook_command(vars_file), cwd=tmp_path, env=env, stdout=log,  # pylint: disable=consider-using-with
                                    stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def listening():
            assert rulebook.poll() is None, f"ansible-rulebook exited:\n{log_path.read_text()}"
            try:
                return requests.get(url, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        _wait(listening, "ansible-rulebook's alertmanager source listening", 180)
        _put_alertmanager_config(_alertmanager_config(original, f"{url}/alerts"))

        with fault("error_burst", "--hosts", "app1"):
            firing = wait_for_alert("HighErrorRate", timeout=180)
            assert firing["labels"]["host"] == "app1"
            # the rulebook starts high_error_rate.yml with the alert: its incident record appears, then its report
            record = _wait(lambda: next((r for r in _records(incidents) if r.get("alert_name") == "HighErrorRate"), None),
                           "HighErrorRate's runbook opened its incident", 240)
            report = Path(record["path"]) / "report.md"
            _wait(lambda: report.is_file() and "HighErrorRate" in report.read_text(encoding="utf-8"), "the report", 240)
            report_seen = time.time()
            _wait(lambda: "PLAY RECAP" in log_path.read_text(encoding="utf-8"), "the runbook's run to finish", 300)
            record = next(r for r in _records(incidents) if r["path"] == record["path"])
            alert = record["alert"]
            assert alert["labels"]["alertname"] == "HighErrorRate" and alert["labels"]["host"] == "app1"
            assert alert["status"] == "firing" and alert["fingerprint"] == record["dedup_key"]
            assert alert["annotations"]["playbook"] == "high_error_rate.yml"
            assert record["status"] != "resolved" and record["remediate"] is False  # investigation only
            fired = _ts(alert["startsAt"])
            started = _ts(record["runs"][0]["started_at"])
            print(f"\nEDA bounds: alert firing → playbook's first task {started - fired:.1f} s, "
                  f"→ report {report_seen - fired:.1f} s")

            # the same alert again, as Alertmanager repeats it: the incident is open, no second run
            payload = {"status": "firing", "alerts": [alert]}
            for _repeat in range(2):
                requests.post(f"{url}/alerts", json=payload, timeout=10).raise_for_status()
            _wait(lambda: log_path.read_text(encoding="utf-8").count("HighErrorRate firing (incident open): no run started") >= 2,
                  "the rulebook declining the repeats", 60)
            records = [r for r in _records(incidents) if r.get("alert_name") == "HighErrorRate"]
            assert len(records) == 1 and len(records[0]["runs"]) == 1
            assert log_path.read_text(encoding="utf-8").count("PLAY RECAP") == 1
            fault_off = time.time()

        # fault off: Prometheus resolves the alert, Alertmanager sends resolved, the rulebook closes the incident
        closed = _wait(lambda: next((r for r in _records(incidents) if r["path"] == record["path"]
                                     and r["status"] == "resolved"), None), "the resolved alert closing the incident", 240)
        print(f"EDA bounds: fault off → incident resolved {time.time() - fault_off:.1f} s")
        assert any(e.get("event") == "alert resolved" for e in closed["timeline"])
        assert len(_records(incidents)) == 1
        assert not (incidents / ".eda-claims" / record["dedup_key"]).exists()
    finally:
        _put_alertmanager_config(original)
        rulebook.terminate()
        try:
            rulebook.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rulebook.kill()
            rulebook.wait(timeout=10)
        print(log_path.read_text(encoding="utf-8")[-3000:])
