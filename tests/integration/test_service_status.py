"""sre.runbooks.service_status over real SSH against a real systemd host (lab/hosts.py).

One lab host is booted with units in every state the module has to tell apart
(running, oneshot, failed, crash-looping, depending on a failed unit, a
template instance), then the module runs through `ansible` as in production.
With the base rootfs cached this file takes about 15 s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from .conftest import free_port, load_lab_module, wait_until

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
HOST = "svcstatus"
UNITS = {
    "svc-healthy.service": """[Unit]
Description=Status test: healthy
[Service]
ExecStart=/bin/sh -c 'while :; do echo "tick $(date +%%s)"; sleep 0.5; done'
[Install]
WantedBy=multi-user.target
""",
    "svc-oneshot.service": """[Unit]
Description=Status test: oneshot
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/echo migrations applied
""",
    # "<3>" is sd-daemon's prefix for priority err, so journal_priority=err keeps exactly that line.
    "svc-fails.service": """[Unit]
Description=Status test: fails
[Service]
ExecStart=/bin/sh -c 'echo "starting worker"; echo "<3>database connection refused" >&2; exit 1'
""",
    "svc-crashloop.service": """[Unit]
Description=Status test: crash loop
StartLimitIntervalSec=0
[Service]
ExecStart=/bin/sh -c 'echo "crashing"; sleep 0.1; exit 3'
Restart=always
RestartSec=100ms
""",
    "svc-dependent.service": """[Unit]
Description=Status test: needs svc-fails
Requires=svc-fails.service
After=svc-fails.service
[Service]
ExecStart=/bin/sleep infinity
""",
    "svc-tmpl@.service": """[Unit]
Description=Status test: instance %i
[Service]
ExecStart=/bin/sleep infinity
""",
}


hosts = load_lab_module("hosts.py", "lab_hosts_for_service_status")


def _show(unit: str, prop: str) -> str:
    return hosts.run(HOST, ["systemctl", "show", "-p", prop, "--value", unit]).stdout.strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("lab hosts need root (overlay mounts, cgroups, systemd-nspawn)")
    state = tmp_path_factory.mktemp("svc-status-lab")
    saved = os.environ.get("LAB_STATE_DIR")
    os.environ["LAB_STATE_DIR"] = str(state)
    try:
        hosts.build_base()  # cached after the first run on a machine
        hosts.boot(HOST, free_port())
        for unit, text in UNITS.items():
            is_template = unit.endswith("@.service")
            hosts.install_unit(HOST, unit, text, enable=False, start=not is_template and unit != "svc-dependent.service")
        # Starting the dependent pulls svc-fails in again (Requires=): it starts, then fails on its own.
        hosts.run(HOST, ["systemctl", "start", "svc-dependent.service", "svc-tmpl@blue.service"])
        wait_until(lambda: _show("svc-fails.service", "ActiveState") == "failed", 15.0, 0.2, what="svc-fails to fail")
        wait_until(lambda: int(_show("svc-crashloop.service", "NRestarts") or 0) >= 3, 15.0, 0.2, what="3 restarts of svc-crashloop")
        inventory = state / "inventory.json"
        inventory.write_text(json.dumps({"all": {"hosts": {HOST: hosts.ansible_host_vars(HOST)}}}), encoding="utf-8")
        yield inventory
    finally:
        try:
            hosts.stop_all()
        finally:
            if saved is None:
                os.environ.pop("LAB_STATE_DIR", None)
            else:
                os.environ["LAB_STATE_DIR"] = saved


def ansible(inventory: Path, args: dict, target: str = HOST, extra: tuple = ()) -> dict:
    """Run the module ad hoc through ansible (SSH) and return the host's result."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO_ROOT / ".collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    argv = [str(VENV_BIN / "ansible"), target, "-i", str(inventory), "-m", "sre.runbooks.service_status",
            "-a", json.dumps(args), *extra]
    completed = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120, check=False)
    try:
        output = json.loads(completed.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"ansible printed no JSON (rc {completed.returncode}): {completed.stdout}\n{completed.stderr}") from None
    return output["plays"][0]["tasks"][0]["hosts"][target]


ISO_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4} svcstatus ")


def test_unit_states_restarts_uptime_and_journal(lab):
    units = ["svc-healthy", "svc-oneshot", "svc-fails", "svc-crashloop", "svc-dependent",
             "svc-tmpl@blue", "heart-disease-api", "sshd"]
    result = ansible(lab, {"units": units, "journal_lines": 5}, extra=("--check",))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    got = result["units"]
    # One systemctl show for all eight units.
    shows = [cmd for cmd in result["commands"] if cmd[1] == "show"]
    assert len(shows) == 1 and shows[0][-8:] == [f"{u}.service" for u in units]

    healthy = got["svc-healthy.service"]
    assert (healthy["active_state"], healthy["sub_state"], healthy["healthy"]) == ("active", "running", True)
    assert healthy["main_pid"] == int(_show("svc-healthy.service", "MainPID"))
    assert 0 < healthy["uptime_seconds"] < 600
    started = datetime.fromisoformat(healthy["active_enter_timestamp"])
    assert abs(datetime.now(timezone.utc).timestamp() - healthy["uptime_seconds"] - started.timestamp()) < 5
    assert healthy["problems"] == []
    assert len(healthy["journal"]) == 5
    assert all(ISO_LINE.match(line) for line in healthy["journal"]), healthy["journal"]
    assert "tick" in healthy["journal"][-1]

    oneshot = got["svc-oneshot.service"]
    assert (oneshot["active_state"], oneshot["sub_state"], oneshot["healthy"]) == ("active", "exited", True)

    failed = got["svc-fails.service"]
    assert (failed["active_state"], failed["result"], failed["healthy"]) == ("failed", "exit-code", False)
    assert (failed["exec_main_code"], failed["exec_main_status"]) == ("exited", 1)
    assert re.fullmatch(r"failed \(exit-code 1\) \d+s ago", failed["problems"][0]), failed["problems"]
    assert any("database connection refused" in line for line in failed["journal"])
    assert "svc-fails.service: Failed with result 'exit-code'." in failed["journal"][-1]

    crashloop = got["svc-crashloop.service"]
    assert crashloop["n_restarts"] >= 3
    assert crashloop["healthy"] is False
    assert f"restarted {crashloop['n_restarts']} times" in crashloop["problems"]
    assert crashloop["restart"] == "always"

    dependent = got["svc-dependent.service"]
    assert (dependent["active_state"], dependent["healthy"]) == ("active", True)
    assert "dependencies" not in dependent  # only with include_dependencies

    instance = got["svc-tmpl@blue.service"]
    assert (instance["description"], instance["healthy"]) == ("Status test: instance blue", True)
    assert instance["fragment_path"] == "/etc/systemd/system/svc-tmpl@.service"

    missing = got["heart-disease-api.service"]
    assert (missing["load_state"], missing["healthy"], missing["problems"]) == ("not-found", False, ["not found"])

    alias = got["sshd.service"]
    assert (alias["id"], alias["healthy"]) == ("ssh.service", True)
    assert any(" sshd[" in line for line in alias["journal"]), alias["journal"]  # read as ssh.service

    assert result["healthy"] is False
    assert result["unhealthy"] == ["svc-fails.service", "svc-crashloop.service", "heart-disease-api.service"]


def test_restart_count_grows(lab):
    first = ansible(lab, {"units": "svc-crashloop", "journal_lines": 0})["units"]["svc-crashloop.service"]["n_restarts"]
    wait_until(lambda: int(_show("svc-crashloop.service", "NRestarts")) > first + 1, 15.0, 0.2, what="more restarts")
    second = ansible(lab, {"units": "svc-crashloop", "journal_lines": 0})["units"]["svc-crashloop.service"]["n_restarts"]
    assert second > first


def test_dependencies_show_the_failed_requirement(lab):
    result = ansible(lab, {"units": ["svc-dependent", "svc-healthy"], "include_dependencies": True, "journal_lines": 0})
    dependent = result["units"]["svc-dependent.service"]
    assert dependent["healthy"] is True
    assert dependent["dependencies_healthy"] is False
    by_unit = {dep["unit"]: dep for dep in dependent["dependencies"]}
    assert list(by_unit) == ["svc-fails.service"]  # implicit sysinit.target, system.slice… are hidden
    assert by_unit["svc-fails.service"]["relations"] == ["requires", "after"]
    assert by_unit["svc-fails.service"]["active_state"] == "failed"
    assert "dependency svc-fails.service failed (exit-code)" in dependent["problems"]
    assert result["units"]["svc-healthy.service"]["dependencies_healthy"] is True

    implicit = ansible(lab, {"units": "svc-dependent", "include_dependencies": True,
                             "include_implicit_dependencies": True, "journal_lines": 0})
    states = {dep["unit"]: dep["active_state"] for dep in implicit["units"]["svc-dependent.service"]["dependencies"]}
    assert states["sysinit.target"] == "active" and states["svc-fails.service"] == "failed"


def test_journal_priority_and_since(lab):
    result = ansible(lab, {"units": "svc-fails", "journal_priority": "err", "journal_lines": 50})
    lines = result["units"]["svc-fails.service"]["journal"]
    assert lines and all(line.endswith("database connection refused") for line in lines), lines

    after_failure = datetime.now(timezone.utc).isoformat()
    time.sleep(1.1)  # journalctl --since has second resolution
    result = ansible(lab, {"units": ["svc-fails", "svc-healthy"], "journal_since": after_failure})
    assert result["journal_since"] is not None
    assert result["units"]["svc-fails.service"]["journal"] == []  # it failed before that and stays failed
    assert all("tick" in line for line in result["units"]["svc-healthy.service"]["journal"])
    assert result["units"]["svc-healthy.service"]["journal"]  # still ticking


def test_bad_unit_name_fails_clearly(lab):
    result = ansible(lab, {"units": ["svc-healthy", "x; systemctl poweroff"]})
    assert result["failed"] is True
    assert "units: 'x; systemctl poweroff' is not a valid systemd unit name" in result["msg"]
    assert hosts.run(HOST, "systemctl is-system-running", check=False).stdout.strip() in ("running", "degraded")


def test_host_without_systemd_fails_naming_the_situation(tmp_path):
    # This test machine itself has systemctl but does not run systemd as PID 1.
    inventory = tmp_path / "local.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}), encoding="utf-8")
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("this machine runs systemd; the no-systemd path is covered by the unit tests and the CI container")
    result = ansible(inventory, {"units": "ssh"}, target="localhost")
    assert result["failed"] is True
    assert "not booted with systemd" in result["msg"] or "does not run systemd" in result["msg"]
