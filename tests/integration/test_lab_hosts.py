"""The lab's real systemd hosts (lab/hosts.py): two systemd-nspawn hosts reached over real SSH.

The first run on a fresh machine builds the base rootfs (1-2 min, cached in
$LAB_ROOTFS_CACHE or /var/cache/sre-runbooks); after that the module boots two
hosts in about a second and the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import free_port, load_lab_module

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
HOST_A = "labtest-a"
HOST_B = "labtest-b"
TICKER_UNIT = "labtest-ticker.service"
TICKER = """[Unit]
Description=Lab test ticker

[Service]
ExecStart=/bin/sh -c 'while :; do echo "tick from $(hostname)"; sleep 0.2; done'
"""


hosts = load_lab_module("hosts.py", "lab_hosts_under_test")


def ssh(name: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real ssh client with the lab key, against the host's port: what Ansible does."""
    port = hosts.status(name).ssh_port
    argv = ["ssh", *hosts.ssh_options(), "-p", str(port), "root@127.0.0.1", command]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert result.returncode == 0, f"{name}: {command!r} -> {result.returncode}: {result.stderr}"
    return result


def nspawn_processes_of_this_lab() -> list[int]:
    marker = f"--machine=lab{hosts.lab_id()}-".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"systemd-nspawn\0") and marker in cmdline:
                pids.append(int(proc.name))
    return pids


def overlay_mounts_of_this_lab() -> list[str]:
    prefix = str(hosts.MOUNT_ROOT / hosts.lab_id()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return [line for line in mounts if line.split()[1].startswith(prefix)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("lab hosts need root (overlay mounts, cgroups, systemd-nspawn)")
    state = tmp_path_factory.mktemp("lab-state")
    saved = os.environ.get("LAB_STATE_DIR")
    os.environ["LAB_STATE_DIR"] = str(state)
    try:
        hosts.build_base()  # cached after the first run on a machine
        hosts.boot_many([
            {"name": HOST_A, "ssh_port": free_port(), "binds": hosts.python_binds()},
            {"name": HOST_B, "ssh_port": free_port()},
        ])
        yield state
    finally:
        try:
            hosts.stop_all()
        finally:
            if saved is None:
                os.environ.pop("LAB_STATE_DIR", None)
            else:
                os.environ["LAB_STATE_DIR"] = saved


def test_boot_rejects_bad_input(lab):
    with pytest.raises(hosts.HostError, match="host name 'Bad_Name'"):
        hosts.boot("Bad_Name", free_port())
    with pytest.raises(hosts.HostError, match="ssh_port 22 must be"):
        hosts.boot("labtest-x", 22)
    with pytest.raises(hosts.HostError, match="bind source /nonexistent/src does not exist"):
        hosts.boot("labtest-x", free_port(), binds=[("/nonexistent/src", "/srv", True)])
    with pytest.raises(hosts.HostError, match="already in use"):
        hosts.boot("labtest-x", hosts.status(HOST_A).ssh_port)
    with pytest.raises(hosts.HostError, match="already running"):
        hosts.boot(HOST_A, free_port())


def test_each_host_answers_ssh_with_its_own_identity(lab):
    identities = {}
    for name in (HOST_A, HOST_B):
        result = ssh(name, "hostname; cat /etc/machine-id; systemctl is-system-running; cat /proc/1/comm")
        hostname, machine_id, system_state, pid1 = result.stdout.split()
        assert hostname == name
        assert system_state == "running"
        assert pid1 == "systemd"
        identities[name] = machine_id
    assert len(set(identities.values())) == 2, "clones must not share a machine-id"
    known_hosts = Path(lab, "ssh", "known_hosts").read_text(encoding="utf-8").splitlines()
    assert len({line.split()[2] for line in known_hosts}) == 2, "each host needs its own SSH host key"


def test_password_login_is_refused(lab):
    port = hosts.status(HOST_A).ssh_port
    result = subprocess.run(
        ["ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-p", str(port), "root@127.0.0.1", "true"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_units_are_isolated_between_hosts(lab):
    installed = hosts.install_unit(HOST_A, TICKER_UNIT, TICKER)
    assert installed == {"changed": True, "active": "active"}
    assert hosts.install_unit(HOST_A, TICKER_UNIT, TICKER)["changed"] is False

    # Not installed in B: B's systemd knows nothing of it, B's PID namespace shows nothing.
    assert ssh(HOST_B, f"systemctl is-active {TICKER_UNIT}", check=False).stdout.strip() == "inactive"
    assert "tick from" not in ssh(HOST_B, "ps -eo args").stdout

    # Same unit in both; stopping A's must leave B's running (the shared-cgroup bug).
    assert hosts.install_unit(HOST_B, TICKER_UNIT, TICKER)["active"] == "active"
    ssh(HOST_A, f"systemctl stop {TICKER_UNIT}")
    time.sleep(0.5)
    assert ssh(HOST_A, f"systemctl is-active {TICKER_UNIT}", check=False).stdout.strip() == "inactive"
    assert ssh(HOST_B, f"systemctl is-active {TICKER_UNIT}").stdout.strip() == "active"
    b_main_pid = ssh(HOST_B, f"systemctl show -p MainPID --value {TICKER_UNIT}").stdout.strip()
    assert b_main_pid != "0"

    journal = ssh(HOST_A, f"journalctl -u {TICKER_UNIT} --no-pager -o cat").stdout
    assert f"tick from {HOST_A}" in journal
    assert f"tick from {HOST_B}" not in journal

    hosts.remove_unit(HOST_B, TICKER_UNIT)
    assert ssh(HOST_B, f"systemctl is-active {TICKER_UNIT}", check=False).stdout.strip() == "inactive"


def test_venv_python_runs_inside_a_host(lab):
    code = "import socket, sys, fastapi; print(sys.prefix); print(socket.gethostname())"
    result = ssh(HOST_A, f"{VENV_BIN / 'python'} -c '{code}'")
    prefix, hostname = result.stdout.split()
    assert prefix == str(REPO_ROOT / ".venv")
    assert hostname == HOST_A
    # Read-only: a host must not be able to change the repo.
    denied = ssh(HOST_A, f"touch {REPO_ROOT}/.lab-hosts-write-test", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr


def test_ansible_gathers_facts_over_ssh(lab, tmp_path):
    inventory = tmp_path / "inventory.yml"
    # JSON is YAML: the yaml inventory plugin reads it.
    inventory.write_text(json.dumps({"all": {"hosts": {name: hosts.ansible_host_vars(name) for name in (HOST_A, HOST_B)}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_PIPELINING="True",
               ANSIBLE_NOCOLOR="1", PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    result = subprocess.run(
        [str(VENV_BIN / "ansible"), "all", "-i", str(inventory), "-m", "ansible.builtin.setup",
         "-a", "gather_subset=!all,!min,service_mgr,distribution"],
        capture_output=True, text=True, timeout=180, env=env, cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    facts = {}
    for match in re.finditer(r"^(\S+) \| SUCCESS => (\{.*?^\})", result.stdout, re.M | re.S):
        facts[match.group(1)] = json.loads(match.group(2))["ansible_facts"]
    assert set(facts) == {HOST_A, HOST_B}
    for host_facts in facts.values():
        assert host_facts["ansible_service_mgr"] == "systemd"
        assert host_facts["ansible_distribution"] == "Debian"


def test_reboot_inside_a_host_boots_it_again(lab):
    before = hosts.status(HOST_B)
    ssh(HOST_B, "systemctl reboot", check=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and hosts.status(HOST_B).nspawn_pid in (None, before.nspawn_pid):
        time.sleep(0.1)
    assert hosts.wait_ready(HOST_B, timeout=60) == "running"
    after = hosts.status(HOST_B)
    assert after.supervisor_pid == before.supervisor_pid
    assert after.nspawn_pid != before.nspawn_pid
    assert ssh(HOST_B, "hostname").stdout.strip() == HOST_B


def test_stop_all_leaves_nothing_behind(lab):
    ports = [hosts.status(name).ssh_port for name in (HOST_A, HOST_B)]
    assert len(nspawn_processes_of_this_lab()) == 2
    assert len(overlay_mounts_of_this_lab()) == 2

    stopped = hosts.stop_all()

    assert set(stopped) == {HOST_A, HOST_B}
    assert nspawn_processes_of_this_lab() == []
    assert overlay_mounts_of_this_lab() == []
    for name, port in zip((HOST_A, HOST_B), ports):
        assert hosts.status(name).state == "stopped"
        assert not any(Path(c).exists() for c in hosts._cgroup_dirs(name))  # pylint: disable=protected-access
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
