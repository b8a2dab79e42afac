"""host_resources against this machine: a CPU burner, a memory grower and real TCP connections started by the test."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._host_resources import REDACTED
from ansible_collections.sre.runbooks.plugins.modules import host_resources
from tests.unit.plugins.modules.utils import run_module

from .conftest import free_port, load_lab_module

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2-not-for-logs"
BURN = "import sys\nprint('ready', flush=True)\nwhile True:\n    pass\n"
# 4 MiB of touched memory every 50 ms (bytes of "x", not zeroed pages that never become resident), up to 600 MiB
GROW = ("import time\nheap = []\nprint('ready', flush=True)\n"
        "while len(heap) < 150:\n    heap.append(b'x' * (4 * 1024 * 1024))\n    time.sleep(0.05)\n"
        "time.sleep(600)\n")


def start(code: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture()
def busy_children():
    burner = start(BURN, "--password", SECRET, f"api_token={SECRET}")
    grower = start(GROW)
    try:
        yield burner, grower
    finally:
        for proc in (burner, grower):
            proc.kill()
            proc.wait()


@pytest.fixture()
def connections():
    """A listener and three established client connections to it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _index in range(3)]
    accepted = [listener.accept()[0] for _index in range(3)]
    try:
        yield port
    finally:
        for sock in clients + accepted + [listener]:
            sock.close()


def test_finds_cpu_burner_and_memory_grower(monkeypatch, busy_children, tmp_path):
    burner, grower = busy_children
    result, failed = run_module(monkeypatch, host_resources.main, {
        "interval": 2, "top": 1000, "per_core": True, "paths": ["/", str(tmp_path), "/does/not/exist"], "_ansible_check_mode": True,
    })
    assert not failed, result
    assert result["changed"] is False
    ranking = [row["pid"] for row in result["top_cpu"]]
    top_cpu = {row["pid"]: row for row in result["top_cpu"]}
    # a busy loop: among the busiest few even when other work shares the 2 cores
    assert ranking.index(burner.pid) < 10, result["top_cpu"][:10]
    assert top_cpu[burner.pid]["cpu_percent"] >= 5 and top_cpu[burner.pid]["state"] == "R"
    assert top_cpu[burner.pid]["cpu_percent"] > top_cpu[grower.pid]["cpu_percent"]
    # per-process ticks add up to (at most) what /proc/stat says the machine did; exited processes are missing
    machine = result["cpu"]["busy"] * result["cpu"]["cores"]
    assert sum(row["cpu_percent"] for row in result["top_cpu"]) <= machine * 1.1 + 5
    assert top_cpu[burner.pid]["cmdline"].endswith(f"--password {REDACTED} api_token={REDACTED}")
    assert SECRET not in json.dumps(result)

    suspects = {row["pid"]: row for row in result["leak_suspects"]}
    assert grower.pid in suspects and burner.pid not in suspects
    assert suspects[grower.pid]["rss_growth_bytes"] >= 8 * 1024 * 1024
    assert suspects[grower.pid]["growth_bytes_per_second"] > 0
    assert any(f"(pid {grower.pid})" in line and "possible memory leak" in line for line in result["findings"])
    assert suspects[grower.pid]["rss_bytes"] >= suspects[grower.pid]["rss_growth_bytes"]
    rss = [row["rss_bytes"] for row in result["top_memory"]]
    assert rss == sorted(rss, reverse=True) and len(rss) == result["processes"]["total"]

    assert result["cpu"]["cores"] == os.cpu_count() and set(result["cpu"]["per_core"]) == {f"cpu{i}" for i in range(os.cpu_count())}
    assert 0 < result["cpu"]["busy"] <= 100
    assert result["memory"]["total_bytes"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < result["memory"]["available_percent"] < 100
    assert result["processes"]["total"] > 3 and result["processes"]["running"] >= 1
    assert 1.5 < result["interval_seconds"] < 4
    root, tmp, missing = result["disks"]
    stat = os.statvfs(str(tmp_path))
    assert tmp["total_bytes"] == stat.f_blocks * stat.f_frsize and 0 < root["used_percent"] < 100
    assert missing == {"path": "/does/not/exist", "error": "No such file or directory"}
    assert result["file_descriptors"]["allocated"] > 0


def test_counts_tcp_connections_per_port(monkeypatch, connections):
    result, failed = run_module(monkeypatch, host_resources.main, {"interval": 0.2, "ports": [connections]})
    assert not failed, result
    (port,) = result["connections"]
    assert port["port"] == connections and port["listening"] is True
    assert port["inbound"]["established"] == 3 and port["inbound"]["states"] == {"ESTABLISHED": 3}
    assert port["inbound"]["top_remote"] == [{"address": "127.0.0.1", "count": 3}]
    # both ends are on this host: the clients are the outbound side
    assert port["outbound"] == {"total": 3, "established": 3, "states": {"ESTABLISHED": 3}}


def test_file_descriptors_of_a_process(monkeypatch, connections):
    """This test process holds the sockets; its fd count must include them."""
    result, failed = run_module(monkeypatch, host_resources.main, {"interval": 0.2, "top": 1000})
    assert not failed, result
    me = next(row for row in result["top_memory"] if row["pid"] == os.getpid())
    assert me["fds"] >= 7  # 3 clients, 3 accepted, 1 listener
    assert me["user"] == pwd.getpwuid(os.getuid()).pw_name


@pytest.mark.parametrize("args, message", [
    ({"interval": 0}, "interval: must be more than 0"),
    ({"top": 0}, "top: must be between 1 and 1000"),
    ({"paths": ["var/lib"]}, "paths: 'var/lib' is not an absolute path"),
    ({"ports": [70000]}, "ports: 70000 is not a TCP port"),
    ({"leak_growth_bytes": 0}, "leak_growth_bytes: must be greater than 0"),
    ({"cmdline_length": 1}, "cmdline_length: must be at least 10"),
])
def test_bad_inputs_name_the_option(monkeypatch, args, message):
    result, failed = run_module(monkeypatch, host_resources.main, args)
    assert failed and result["msg"].startswith(message), result


@pytest.fixture()
def nspawn_host(tmp_path_factory, monkeypatch):
    """One lab host (systemd-nspawn, own PID namespace, host network) in a lab of its own."""
    if os.geteuid() != 0:
        pytest.fail("lab hosts need root (overlay mounts, cgroups, systemd-nspawn)")
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path_factory.mktemp("hr-lab")))
    hosts = load_lab_module("hosts.py", "lab_hosts_for_host_resources")
    hosts.build_base()  # cached after the first run on a machine
    try:
        hosts.boot("hrtest", free_port())
    except hosts.HostError:
        # seen while other labs boot at the same time: systemd in the container races on /sys/fs/cgroup symlinks
        hosts.stop_all()
        hosts.boot("hrtest", free_port())
    try:
        yield hosts, "hrtest"
    finally:
        hosts.stop_all()


def test_inside_a_lab_nspawn_host(nspawn_host, tmp_path):
    """Run through ansible over SSH in a systemd-nspawn host: its /proc shows its own processes."""
    hosts, name = nspawn_host
    ssh_port = hosts.status(name).ssh_port
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {name: hosts.ansible_host_vars(name)}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    args = {"interval": 1, "top": 1000, "ports": [ssh_port]}
    done = subprocess.run([str(REPO / ".venv" / "bin" / "ansible"), name, "-i", str(inventory), "-m", "sre.runbooks.host_resources",
                           "-a", json.dumps(args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.split(" => ", 1)[1])
    processes = {row["pid"]: row for row in result["top_memory"]}
    assert processes[1]["name"] == "systemd"  # the container's PID 1, not this machine's
    assert len(processes) == result["processes"]["total"] < 100
    assert not any("pytest" in row["cmdline"] for row in processes.values())
    assert any(row["name"] == "sshd" for row in processes.values())
    (ssh,) = result["connections"]
    assert ssh["listening"] is True and ssh["inbound"]["established"] >= 1  # Ansible's own connection
    assert result["cpu"]["cores"] == os.cpu_count() and result["memory"]["total_bytes"] > 0
