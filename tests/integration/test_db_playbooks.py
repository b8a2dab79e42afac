"""The database playbooks through ansible-playbook against a real PostgreSQL 15 (tests/integration/_postgres.py).

SlowDatabaseQueries: a large table read by an unindexed column while a slow statement runs; the playbook must
name the missing index, create it (concurrently) only with runbook_remediate, see the new plan use it, and
change nothing on a second run. Prometheus is not there: that is a finding, not a failure.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from tests.integration._playbooks import local_host, run_playbook as run

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]

ROWS = 40000


def run_playbook(tmp_path: Path, server, playbook: str, **extra) -> tuple[subprocess.CompletedProcess, dict]:
    inventory = {"all": {"children": {"db": {"hosts": {"db1": local_host(
        postgres_host=server.host, postgres_port=server.port, postgres_database=server.app_database,
        postgres_user=server.app_user, postgres_password=server.app_password,
        postgres_admin_user=server.superuser, postgres_admin_password=server.superuser_password)}}},
        "vars": {"prometheus_url": "http://127.0.0.1:9"}}}  # nothing listens there
    return run(tmp_path, playbook, inventory, **extra)


@pytest.fixture()
def slow_workload(postgres_server):
    with postgres_server.connect(superuser=False, dbname=postgres_server.app_database) as app:
        app.execute("DROP TABLE IF EXISTS shift_log")
        app.execute("CREATE TABLE shift_log (id serial PRIMARY KEY, person_id int, note text)")
        app.execute(f"INSERT INTO shift_log (person_id, note) SELECT g % 700, 'n' || g FROM generate_series(1, {ROWS}) g")
    with postgres_server.connect(superuser=False, dbname=postgres_server.app_database) as app:
        app.execute("ANALYZE shift_log")
        for person in range(15):
            app.execute("SELECT count(*) FROM shift_log WHERE person_id = %s", (person,))
    with postgres_server.connect(dbname=postgres_server.app_database) as conn:
        postgres_server.wait_until(lambda: conn.execute(
            "SELECT seq_scan >= 15 FROM pg_stat_user_tables WHERE relname = 'shift_log'").fetchone()[0], what="stats flushed")
    # The slow statement the on-call engineer is paged for, run over and over on two connections half a run apart,
    # so that at any moment one of them has been running for over a second, whatever the machine's load.
    stop = threading.Event()
    runners = [threading.Thread(target=_keep_running, args=(postgres_server, stop, delay), daemon=True) for delay in (0, 2.5)]
    for runner in runners:
        runner.start()
    postgres_server.wait_until(lambda: _active(postgres_server, "slow-report") >= 2, timeout=15, what="slow statements running")
    yield postgres_server
    stop.set()
    with postgres_server.connect() as conn:
        conn.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'slow-report'")
    for runner in runners:
        runner.join(10)
    with postgres_server.connect(superuser=False, dbname=postgres_server.app_database) as app:
        app.execute("DROP TABLE IF EXISTS shift_log")


def _keep_running(server, stop: threading.Event, delay: float) -> None:
    stop.wait(delay)
    with psycopg.connect(autocommit=True, **server.conninfo(False, dbname=server.app_database, application_name="slow-report")) as conn:
        while not stop.is_set():
            _run_quietly(conn, "SELECT count(*), pg_sleep(5) FROM shift_log WHERE person_id = 7")


def _run_quietly(conn, statement):
    try:
        conn.execute(statement)
    except psycopg.Error:
        pass  # cancelled at teardown


def _active(server, application_name):
    with server.connect() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'",
                            (application_name,)).fetchone()[0]


def _indexes(server):
    with server.connect(dbname=server.app_database) as conn:
        return sorted(r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'shift_log'"))


def test_slow_queries_names_the_missing_index_and_adds_it_only_when_asked(tmp_path, slow_workload):
    proc, record = run_playbook(tmp_path, slow_workload, "slow_database_queries.yml")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert record["decision"]["missing_indexes"] == ["CREATE INDEX CONCURRENTLY shift_log_person_id_idx ON public.shift_log (person_id)"]
    assert record["actions"] == [] and _indexes(slow_workload) == ["shift_log_pkey"]  # investigation only
    assert any("Prometheus" in u["what"] for u in record["unchecked"])

    proc, record = run_playbook(tmp_path, slow_workload, "slow_database_queries.yml", runbook_remediate=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert _indexes(slow_workload) == ["shift_log_person_id_idx", "shift_log_pkey"]
    assert [a["detail"] for a in record["actions"]] == ["CREATE INDEX CONCURRENTLY shift_log_person_id_idx ON public.shift_log (person_id)"]
    assert record["status"] == "resolved"  # the statement's plan no longer scans the table
    assert "shift_log_person_id_idx" in json.dumps(record["findings"][-1])

    proc, again = run_playbook(tmp_path, slow_workload, "slow_database_queries.yml", runbook_remediate=True)
    assert proc.returncode == 0 and "changed=0" in proc.stdout.split("PLAY RECAP")[-1]


def test_pool_exhaustion_terminates_idle_transactions_of_the_app_only_when_asked(tmp_path, postgres_server):
    """Twelve application sessions idle in a transaction, one superuser session idle in one too: the runbook names
    the cause, touches nothing without runbook_remediate, then ends the application's sessions and only those."""
    app_sessions = [psycopg.connect(**postgres_server.conninfo(False, dbname=postgres_server.app_database, application_name="leaky"))
                    for _unused in range(12)]
    admin = psycopg.connect(**postgres_server.conninfo(True, application_name="dba-console"))
    try:
        for conn in app_sessions + [admin]:
            conn.execute("SELECT 1")  # autocommit off: each now sits idle in an open transaction
        extra = {"db_triage_idle_in_transaction_threshold": "1s", "db_triage_sample_interval": 1, "runbook_monitor_minutes": 0.05,
                 "runbook_escalate_after_minutes": 0.1, "runbook_poll_seconds": 1}
        proc, record = run_playbook(tmp_path, postgres_server, "database_connection_pool_exhaustion.yml", **extra)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert record["decision"]["cause"] == "sessions idle in a transaction"
        assert int(record["decision"]["idle_in_transaction"]) >= 12
        assert all(not conn.closed and conn.execute("SELECT 1").fetchone() for conn in app_sessions)  # untouched

        for conn in app_sessions:
            conn.execute("SELECT 1")  # back to idle in transaction (the check above ran inside it)
        proc, record = run_playbook(tmp_path, postgres_server, "database_connection_pool_exhaustion.yml", runbook_remediate=True, **extra)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        [action] = [a for a in record["actions"] if a["action"] == "terminate idle-in-transaction sessions"]
        assert action["detail"].startswith("12 session(s)")
        with postgres_server.connect() as conn:
            left = dict(conn.execute("SELECT application_name, count(*) FROM pg_stat_activity "
                                     "WHERE application_name IN ('leaky', 'dba-console') GROUP BY 1").fetchall())
        assert left == {"dba-console": 1}  # the superuser's session is never touched
        # Prometheus is not there: recovery cannot be verified, which escalates to the DBA.
        assert record["escalations"] and "DBA" in json.dumps(record["escalations"])
    finally:
        for conn in app_sessions + [admin]:
            conn.close()
