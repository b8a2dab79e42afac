"""The fault tests share the lab harness (molecule/shared/harness.py) and add what breaking the lab needs:

- ``in_host(host, command)``: a command in a lab host without SSH (``nsenter`` into its systemd), so a test can stop the
  host's sshd and start it again;
- ``unit_stopped(host, unit)``: a dependency (PostgreSQL, Redis, Prometheus, Alertmanager) down for the block, started
  again and ready afterwards whatever happens;
- ``ssh_refused(host)``: the host's SSH port refuses connections and its open sessions are cut (a host gone from the
  network, or SSH dropping), restored afterwards;
- the ``runs`` fixture: ``runs.run(playbook, ...)`` as the harness's ``runbook`` does, and ``runs.start(...)`` for a run
  in the background (its own process group) that the test watches (``wait_for_output``) and kills (``kill``) at a
  chosen task; both share one incident directory, so a rerun joins the interrupted run's incident.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from harness import *  # noqa: E402,F401,F403  pylint: disable=wildcard-import,unused-wildcard-import,wrong-import-position
from harness import BIN, INCIDENTS, LAB_STATE, PORT_OFFSET, RECAP, REPO, RunbookRun  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ["local://"]

# What a unit needs to be ready again after a test started it (systemctl is-active is not enough for a server).
READY = {
    "postgresql@15-main": "runuser -u postgres -- pg_isready -q -p {port}",
    "redis-server": "redis-cli -p {port} ping | grep -q PONG",
    "prometheus": "curl -fsS http://127.0.0.1:{port}/-/ready >/dev/null",
    "prometheus-alertmanager": "curl -fsS http://127.0.0.1:{port}/-/ready >/dev/null",
}
PORTS = {"postgresql@15-main": 15432, "redis-server": 16379, "prometheus": 19090, "prometheus-alertmanager": 19093}


def host_record(host: str) -> dict:
    """lab/hosts.py's record of a lab host (its nspawn pid file, SSH port, machine name)."""
    return json.loads((LAB_STATE / "hosts" / host / "host.json").read_text())


def host_leader(host: str) -> int:
    """The pid of the host's systemd (PID 1 inside it): the child of its systemd-nspawn."""
    nspawn = int((LAB_STATE / "hosts" / host / "nspawn.pid").read_text().strip())
    children = Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split()
    assert children, f"{host}: systemd-nspawn {nspawn} has no child: is the host running?"
    return int(children[0])


def in_host(host: str, command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell command inside a lab host through its namespaces (works while its sshd is down)."""
    proc = subprocess.run(["nsenter", "-t", str(host_leader(host)), "-a", "/bin/sh", "-c", command],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert not check or proc.returncode == 0, f"{host}: `{command}` exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    return proc


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 90, interval: float = 0.5) -> None:
    """Poll PREDICATE until it holds; fails naming WHAT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@contextlib.contextmanager
def unit_stopped(host: str, unit: str) -> Iterator[None]:
    """UNIT stopped in HOST for the block (a dependency down); started and ready again afterwards."""
    in_host(host, f"systemctl stop {unit}")
    try:
        assert in_host(host, f"systemctl is-active {unit}", check=False).stdout.strip() != "active"
        yield
    finally:
        in_host(host, f"systemctl start {unit}")
        ready = READY[unit].format(port=PORTS[unit] + PORT_OFFSET)
        wait_until(lambda: in_host(host, ready, check=False).returncode == 0, f"{host}/{unit} ready again")


def ssh_port(host: str) -> int:
    return int(host_record(host)["ssh_port"])


@contextlib.contextmanager
def ssh_refused(host: str, cut_sessions: bool = True) -> Iterator[None]:
    """HOST's sshd stops listening and (CUT_SESSIONS) its open sessions, Ansible's persistent connections included, are
    cut: the host is unreachable over SSH. Afterwards sshd listens again."""
    in_host(host, "systemctl stop ssh.service")
    if cut_sessions:
        # Inside the host's pid namespace: only this host's sshd session processes (the listener is stopped already).
        in_host(host, "for pid in $(pgrep -x sshd); do kill -9 $pid; done", check=False)
        in_host(host, "for pid in $(pgrep -f '^sshd: [^ ]*@'); do kill -9 $pid; done", check=False)
    try:
        yield
    finally:
        in_host(host, "systemctl start ssh.service")
        wait_until(lambda: lab_ssh_ok(host), f"{host} reachable over SSH again")


def lab_ssh_ok(host: str) -> bool:
    proc = subprocess.run(["ssh", "-F", str(LAB_STATE / "ssh" / "config"), "-o", "ConnectTimeout=5", host, "true"],
                          capture_output=True, text=True, timeout=30, check=False)
    return proc.returncode == 0


def kill_remote_modules(host: str) -> str:
    """SIGKILL every Ansible module running in HOST, with its whole process tree: the remote half of a killed run.

    A run's module runs in the host as ``/bin/sh -c '<python> && sleep 0'`` under sshd; killing ansible-playbook on the
    controller leaves it running, as a crashed controller would not. Returns the killed pids."""
    script = ("kill_tree() { for c in $(pgrep -P $1); do kill_tree $c; done; kill -9 $1 2>/dev/null && echo $1; }; "
              "for p in $(pgrep -f '[&]& sleep 0'); do kill_tree $p; done")
    return in_host(host, script, check=False).stdout


def interrupt(background: "Background", host: str) -> str:
    """The run killed at once on both sides: its module in HOST, and ansible-playbook's process group."""
    killed = kill_remote_modules(host)
    background.kill()
    return killed


def unchecked_text(run: RunbookRun) -> str:
    """Every entry of the record's "unchecked" list as one lower-case text (what could not be checked, and why)."""
    return json.dumps(run.record.get("unchecked") or []).lower()


class Background:
    """An ansible-playbook run in its own process group, its output in a file the test watches."""

    def __init__(self, argv: list[str], env: dict[str, str], output: Path, incidents: Path):
        self.output = output
        self.incidents = incidents
        self.before = {p: p.stat().st_mtime for p in incidents.glob("*/incident.json")} if incidents.is_dir() else {}
        self.handle = open(output, "w", encoding="utf-8")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self.handle, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                     text=True, start_new_session=True)
        self.started = time.monotonic()

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def wait_for_output(self, needle: str, timeout: float = 240) -> float:
        """Block until NEEDLE appears in the run's output; returns the seconds since the start. Fails if the run ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended ({self.proc.returncode}) before {needle!r}:\n{self.text()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not in the run's output within {timeout:.0f} s:\n{self.text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL to the run's whole process group (ansible-playbook, its workers, their ssh clients)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait(self, timeout: float = 600) -> RunbookRun:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.handle.close()
        text = self.text()
        return RunbookRun(proc=subprocess.CompletedProcess(self.proc.args, self.proc.returncode, text, ""),
                          record=newest_record(self.incidents, self.before), recap=recap_of(text))


def newest_record(incidents: Path, before: dict[Path, float]) -> dict[str, Any]:
    """The incident record a run wrote (the newest incident.json it touched), with its directory as "path"."""
    if not incidents.is_dir():
        return {}
    touched = [p for p in incidents.glob("*/incident.json") if before.get(p) != p.stat().st_mtime]
    if not touched:
        return {}
    newest = max(touched, key=lambda p: p.stat().st_mtime)
    record = json.loads(newest.read_text())
    record["path"] = str(newest.parent)
    return record


def recap_of(text: str) -> dict[str, dict[str, int]]:
    return {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
            for m in (RECAP.match(line) for line in text.splitlines()) if m}


class Runs:
    """Runs of the runbook playbooks (or of a test's own playbook) on the lab, sharing one incident directory."""

    def __init__(self, work: Path):
        self.work = work
        # (the pytest session's directory in the name: a later session never joins an earlier one's incidents)
        self.incidents = INCIDENTS / f"{work.parent.name}-{work.name}"

    def argv(self, playbook: str, remediate: bool, alert: dict | None, extra: dict[str, Any]) -> list[str]:
        variables: dict[str, Any] = {"runbook_remediate": remediate, "runbook_incident_dir": str(self.incidents),
                                     "runbook_poll_seconds": 5, "runbook_monitor_minutes": 0.5,
                                     "runbook_escalate_after_minutes": 2, **extra}
        if alert is not None:
            variables["alert"] = alert
        extra_file = self.work / f"extra-{time.monotonic_ns()}.json"
        extra_file.write_text(json.dumps(variables))
        path = Path(playbook) if os.path.isabs(playbook) else REPO / "playbooks" / playbook
        return [str(BIN / "ansible-playbook"), "-i", str(REPO / "inventories" / "lab"), "-e", f"@{extra_file}", str(path)]

    @staticmethod
    def env() -> dict[str, str]:
        return {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "LAB_STATE_DIR": str(LAB_STATE),
                "LAB_PORT_OFFSET": str(PORT_OFFSET)}

    def start(self, playbook: str, remediate: bool = False, alert: dict | None = None, **extra: Any) -> Background:
        return Background(self.argv(playbook, remediate, alert, extra), self.env(),
                          self.work / f"run-{time.monotonic_ns()}.out", self.incidents)

    def run(self, playbook: str, remediate: bool = False, alert: dict | None = None, **extra: Any) -> RunbookRun:
        return self.start(playbook, remediate, alert, **extra).wait()


@pytest.fixture(name="runs")
def runs_fixture(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("faults"))
