"""Two runs of the same remediation on the same target at once: they take turns on the lock, and the second sees the first's result.

DatabaseConnectionPoolExhaustion with runbook_remediate, twice at the same moment against one real PostgreSQL 15 holding
twelve application sessions idle in a transaction. Both runs investigate and find the twelve sessions; a gate (the test
holding the same lock) makes sure both are waiting at the lock before either may act. Then exactly one terminates the
twelve; the other waits for it, finds none left (pg_terminate reads pg_stat_activity again), changes nothing and records
that the first run had already done it. The lock's history gives each run's window: they do not overlap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._remediation_lock import RemediationLock
from tests.integration._playbooks import REPO, local_host
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]

OWNER_TASK = "Name this run as the lock owner, once per run"
TERMINATE_TASK = "Terminate the application's sessions idle in a transaction"


def _lock_waiters(work: Path) -> int:
    """This test's lock module processes running right now (each one waiting, or about to take the lock)."""
    count = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"AnsiballZ_remediation_lock" in (proc / "cmdline").read_bytes() and str(work).encode() in (proc / "environ").read_bytes():
                count += 1
        except OSError:
            continue
    return count


def _timeline(incidents: Path) -> list[dict]:
    entries = []
    for log in incidents.glob("*/timeline.jsonl"):
        entries += [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return entries


def _start(work: Path, inventory: dict, extra: dict) -> subprocess.Popen:
    """ansible-playbook database_connection_pool_exhaustion.yml as tests/integration/_playbooks.py runs it, in the background."""
    work.mkdir()
    (work / "inventory.json").write_text(json.dumps(inventory))
    (work / "extra.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_LOCAL_TEMP": str(work / "tmp"), "ANSIBLE_HOME": str(work / "ansible-home")}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / "inventory.json"), "-e", f"@{work / 'extra.json'}",
            str(REPO / "playbooks" / "database_connection_pool_exhaustion.yml")]
    with open(work / "output.log", "w", encoding="utf-8") as output:  # a file, not a pipe: nobody reads it while the run waits
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)


def test_two_runs_of_the_pool_relief_take_turns_and_the_second_finds_it_done(tmp_path, postgres_server):
    incidents, locks = tmp_path / "incidents", tmp_path / "locks"
    inventory = {"all": {"children": {"db": {"hosts": {"db1": local_host(
        postgres_host=postgres_server.host, postgres_port=postgres_server.port, postgres_database=postgres_server.app_database,
        postgres_user=postgres_server.app_user, postgres_password=postgres_server.app_password,
        postgres_admin_user=postgres_server.superuser, postgres_admin_password=postgres_server.superuser_password)}}},
        "vars": {"prometheus_url": "http://127.0.0.1:9"}}}  # nothing listens there: recovery unverified, escalated
    extra = {"runbook_remediate": True, "runbook_incident_dir": str(incidents), "remediation_lock_path": str(locks),
             "remediation_lock_wait": 900, "db_triage_idle_in_transaction_threshold": "1s", "db_triage_sample_interval": 1,
             "runbook_monitor_minutes": 0.01, "runbook_escalate_after_minutes": 0.02, "runbook_poll_seconds": 1}
    sessions = [psycopg.connect(**postgres_server.conninfo(False, dbname=postgres_server.app_database, application_name="leaky"))
                for _unused in range(12)]
    gate = RemediationLock(str(locks), "database_connection_pool:db1")
    gate.acquire("test gate", wait=0, ttl=3600)
    runs: list[subprocess.Popen] = []
    try:
        for conn in sessions:
            conn.execute("SELECT 1")  # autocommit off: each now sits idle in an open transaction
        runs = [_start(tmp_path / f"run{n}", inventory, extra) for n in (1, 2)]
        # Both have investigated (their owner names are set) and both lock modules are running: both wait at the gate.
        wait_until(lambda: len({e["run"] for e in _timeline(incidents) if e.get("task") == OWNER_TASK}) == 2, 600, 0.1, "both runs at the lock")
        wait_until(lambda: _lock_waiters(tmp_path) >= 2, 120, 0.1, "both lock modules waiting")
        gate.release("test gate")
        for run in runs:
            run.wait(timeout=900)
    finally:
        gate.release("test gate", force=True)
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
        for conn in sessions:
            conn.close()

    for n, run in enumerate(runs, 1):
        assert run.returncode == 0, (tmp_path / f"run{n}" / "output.log").read_text()[-6000:]
    [incident] = [json.loads(p.read_text()) for p in incidents.glob("*/incident.json")]  # the second run joined the first's
    assert len(incident["runs"]) == 2

    # Exactly one run terminated the twelve sessions; the other found them gone and said who had done it.
    terminated = [a for a in incident["actions"] if a["action"] == "terminate idle-in-transaction sessions"]
    assert len(terminated) == 1 and terminated[0]["detail"].startswith("12 session(s)"), incident["actions"]
    [done] = [a for a in incident["actions"] if "already done by" in a["action"]]
    assert done["changed"] is False and done["host"] == "db1" and "no session idle in a transaction" in done["result"]
    with postgres_server.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaky'").fetchone()[0] == 0

    # The lock's history: the gate, then the two runs, one after the other; the second waited for the first.
    history = json.loads((locks / "database_connection_pool:db1.history").read_text())
    assert [h["owner"] for h in history][0] == "test gate" and len(history) == 3
    first, second = history[1], history[2]
    assert first["released_ts"] <= second["acquired_ts"], "the two remediation windows overlap"
    assert first["owner"] in done["action"] and second["owner"] not in done["action"]
    assert all(h["released_by"] == h["owner"] for h in history)
    assert not (locks / "database_connection_pool:db1.lock").exists()

    # The incident timeline: each run's pg_terminate ran inside its own lock window; only the first changed anything.
    by_owner_run = {}
    tasks = _timeline(incidents)
    for entry in tasks:
        if entry.get("task", "").startswith("Take the lock") and entry.get("status") == "ok":
            by_owner_run.setdefault(entry["run"], entry)
    assert len(by_owner_run) == 2
    terminates = sorted((e for e in tasks if e.get("task") == TERMINATE_TASK), key=lambda e: e["time"])
    assert [e["status"] for e in terminates] == ["changed", "ok"]
    waits = sorted(e["duration_s"] for e in by_owner_run.values())
    # Both waited at the gate; the second also waited for the first run's whole remediation (its terminate and record).
    assert waits[1] > waits[0] and waits[1] >= first["released_ts"] - first["acquired_ts"] - 1.0
    events = [e for e in incident["timeline"] if e["event"] == "already-done"]
    assert len(events) == 1 and float(events[0]["detail"].rsplit("waited ", 1)[1].split(" s")[0]) > 0
