"""pg_terminate against a real PostgreSQL 15 of its own (terminate-all filters must not hit other tests' sessions)."""

from __future__ import annotations

import os
import subprocess
import threading
from contextlib import ExitStack, closing

import psycopg
import pytest
from psycopg import sql

from ansible_collections.sre.runbooks.plugins.modules import pg_terminate
from tests.unit.plugins.modules.utils import run_module

from .conftest import postgres_helpers as _pg, wait_until

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]


REPL_ROLE = "replicator"
REPL_PASSWORD = "repl-test-password"


@pytest.fixture(scope="module")
def server():
    with _pg().PostgresServer(max_connections=40) as pg:
        with pg.connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(sql.Identifier(REPL_ROLE), sql.Literal(REPL_PASSWORD)))
        yield pg


def terminate(monkeypatch, server, check=False, diff=True, superuser=True, **args):
    full = server.module_args(superuser=superuser, application_name="sre-terminate")
    full.update(args)
    full["_ansible_check_mode"] = check
    full["_ansible_diff"] = diff
    return run_module(monkeypatch, pg_terminate.main, full)


def app_conn(server, application_name, **overrides):
    info = {"dbname": server.app_database, "application_name": application_name}
    info.update(overrides)
    return server.connect(superuser=False, **info)


def live_pids(server):
    """Every backend of the server with its backend_start: a terminated-and-replaced pid would show up as changed."""
    with server.connect(application_name="observer") as conn:
        rows = conn.execute("SELECT pid, backend_start, backend_type, application_name FROM pg_stat_activity"
                            " WHERE pid <> pg_backend_pid()").fetchall()
    return {(pid, start): (btype, app) for pid, start, btype, app in rows}


def alive(conn):
    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def in_thread(conn, statement):
    outcome = {}

    def target():
        try:
            conn.execute(statement)
            outcome["done"] = True
        except psycopg.Error as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def wait_state(server, application_name, state):
    def check():
        with server.connect(application_name="observer") as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = %s",
                                (application_name, state)).fetchone()[0]
    return wait_until(check, what=f"{application_name} in state {state}")


@pytest.fixture
def receivewal(server, tmp_path):
    """A real physical replication stream: pg_receivewal as a non-superuser REPLICATION role."""
    target = tmp_path / "wal"
    target.mkdir()
    env = dict(os.environ, PGPASSWORD=REPL_PASSWORD)
    proc = subprocess.Popen([str(_pg().PG_BIN / "pg_receivewal"), "-D", str(target), "-h", server.host, "-p", str(server.port),
                             "-U", REPL_ROLE, "--no-loop", "-w"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def streaming():
        if proc.poll() is not None:
            raise RuntimeError(f"pg_receivewal exited: {proc.stderr.read().decode()}")
        with server.connect(application_name="observer") as conn:
            return conn.execute("SELECT pid FROM pg_stat_replication WHERE usename = %s AND application_name = 'pg_receivewal'",
                                (REPL_ROLE,)).fetchone()
    walsender_pid = wait_until(streaming, what="pg_receivewal streaming")[0]
    yield proc, walsender_pid
    proc.terminate()
    proc.wait(timeout=10)


def test_terminate_all_spares_replication_superuser_and_itself(monkeypatch, server, receivewal):
    proc, walsender_pid = receivewal
    with ExitStack() as stack:
        apps = [stack.enter_context(app_conn(server, "leaky")) for _unused in range(3)]
        busy = stack.enter_context(app_conn(server, "busy"))
        thread, outcome = in_thread(busy, "SELECT pg_sleep(60)")
        wait_state(server, "busy", "active")
        superuser = stack.enter_context(server.connect(application_name="dba-console"))
        logical = stack.enter_context(psycopg.connect(host=server.host, port=server.port, user=REPL_ROLE, password=REPL_PASSWORD,
                                                      dbname=server.app_database, replication="database", autocommit=True,
                                                      application_name="logical-consumer"))
        client_pids = sorted(c.info.backend_pid for c in apps + [busy])

        before = live_pids(server)
        preview, failed = terminate(monkeypatch, server, check=True, action="terminate", match_all=True)
        assert not failed, preview
        assert preview["changed"] is True
        assert sorted(s["pid"] for s in preview["sessions"]) == client_pids
        assert {s["result"] for s in preview["sessions"]} == {"would be terminated"}
        assert preview["queries"] == []
        assert live_pids(server) == before  # check mode touched nobody
        assert all(alive(c) for c in apps) and thread.is_alive()
        assert "pid" in preview["diff"]["before"] and "would be terminated" not in preview["diff"]["before"]

        result, failed = terminate(monkeypatch, server, action="terminate", match_all=True)
        assert not failed, result
        assert result["changed"] is True and result["count"] == 4
        assert sorted(s["pid"] for s in result["sessions"]) == client_pids
        assert {s["result"] for s in result["sessions"]} == {"terminated"}
        assert sorted(result["queries"]) == sorted(f"SELECT pg_terminate_backend({pid}, 5000)" for pid in client_pids)
        busy_hit = next(s for s in result["sessions"] if s["application_name"] == "busy")
        assert busy_hit["query"] == "SELECT pg_sleep(60)" and busy_hit["state"] == "active" and busy_hit["duration_seconds"] >= 0
        assert f"pid {busy_hit['pid']}" in result["diff"]["before"] and f"pid {busy_hit['pid']}: terminated" in result["diff"]["after"]

        reasons = {p["pid"]: p["reason"] for p in result["protected"]}
        assert reasons[walsender_pid] == "not a client session (walsender)"
        assert reasons[logical.info.backend_pid] == "not a client session (walsender)"
        assert reasons[superuser.info.backend_pid].startswith("superuser session")
        assert reasons[result["own_pid"]] == "the module's own session"
        assert any(r == "not a client session (autovacuum launcher)" for r in reasons.values())
        assert any(r == "not a client session (logical replication launcher)" for r in reasons.values())

        thread.join(timeout=10)
        assert isinstance(outcome.get("error"), psycopg.OperationalError)
        assert not any(alive(c) for c in apps)
        assert alive(superuser) and alive(logical)
        assert proc.poll() is None  # the replication stream is still running
        after = live_pids(server)
        assert all(key in after for key, (btype, _app) in before.items() if btype != "client backend" or key[0] not in client_pids)

        again, failed = terminate(monkeypatch, server, action="terminate", match_all=True)
        assert not failed and again["changed"] is False and again["sessions"] == [] and again["count"] == 0


def test_max_targets_fail_touches_nobody_then_longest_first(monkeypatch, server):
    with ExitStack() as stack:
        conns = [stack.enter_context(app_conn(server, "swarm")) for _unused in range(5)]
        result, failed = terminate(monkeypatch, server, action="terminate", application_name_filter=["swarm"], max_targets=3)
        assert failed and result["msg"].startswith("max_targets: 5 sessions match")
        assert len(result["candidates"]) == 5
        assert all(alive(c) for c in conns)

        result, failed = terminate(monkeypatch, server, action="terminate", application_name_filter=["swarm"], max_targets=3,
                                   over_max_targets="longest_first")
        assert not failed, result
        assert result["count"] == 3 and result["matched_count"] == 5
        assert any("only the 3 longest" in w for w in result["limitations"])
        assert sum(alive(c) for c in conns) == 2
        # The oldest in their state went first: the survivors are the two connected last.
        assert [alive(c) for c in conns] == [False, False, False, True, True]


def test_cancel_keeps_session_and_filters_by_duration_and_pattern(monkeypatch, server):
    with app_conn(server, "reports") as slow, app_conn(server, "reports") as other:
        thread, outcome = in_thread(slow, "SELECT pg_sleep(60) /* rotation_report */")
        wait_state(server, "reports", "active")
        none, failed = terminate(monkeypatch, server, action="cancel", state=["active"], min_duration="1h")
        assert not failed and none["changed"] is False and none["sessions"] == []

        bad, failed = terminate(monkeypatch, server, action="cancel", query_pattern="(unclosed")
        assert failed and bad["option"] == "query_pattern"

        result, failed = terminate(monkeypatch, server, action="cancel", query_pattern="(?i)ROTATION_REPORT", state=["active"])
        assert not failed, result
        assert [s["pid"] for s in result["sessions"]] == [slow.info.backend_pid]
        assert result["sessions"][0]["result"] == "cancelled"
        thread.join(timeout=10)
        assert isinstance(outcome.get("error"), psycopg.errors.QueryCanceled)
        assert alive(slow) and alive(other)  # cancel keeps the session


def test_idle_in_transaction_age_and_client_address(monkeypatch, server):
    with closing(app_conn(server, "pool", autocommit=False)) as stuck, app_conn(server, "pool") as idle, \
            psycopg.connect(host=server.socket_dir, port=server.port, user=server.superuser, password=server.superuser_password,
                            dbname=server.app_database, application_name="pool", autocommit=True) as via_socket:
        stuck.execute("SELECT 1")  # opens the transaction, then the session goes idle in it
        wait_state(server, "pool", "idle in transaction")
        result, failed = terminate(monkeypatch, server, check=True, action="terminate", min_idle_in_transaction="0s",
                                   application_name_filter=["pool"])
        assert not failed and [s["pid"] for s in result["sessions"]] == [stuck.info.backend_pid]
        assert result["sessions"][0]["transaction_seconds"] is not None

        tcp, failed = terminate(monkeypatch, server, check=True, action="terminate", client_addr=["127.0.0.0/8"],
                                application_name_filter=["pool"], allow_superuser=True)
        assert not failed and sorted(s["pid"] for s in tcp["sessions"]) == sorted([stuck.info.backend_pid, idle.info.backend_pid])
        local, failed = terminate(monkeypatch, server, check=True, action="terminate", client_addr=["local"],
                                  application_name_filter=["pool"], allow_superuser=True)
        assert not failed and [s["pid"] for s in local["sessions"]] == [via_socket.info.backend_pid]
        assert local["sessions"][0]["client_addr"] == "local"

        result, failed = terminate(monkeypatch, server, action="terminate", min_idle_in_transaction="0s", application_name_filter=["pool"])
        assert not failed and result["count"] == 1
        assert not alive(stuck) and alive(idle) and alive(via_socket)


def test_superuser_only_when_allowed_and_unprivileged_role_cannot_reach_others(monkeypatch, server):
    with server.connect(application_name="dba") as dba, app_conn(server, "mine") as mine:
        result, failed = terminate(monkeypatch, server, superuser=False, action="terminate", application_name_filter=["dba", "mine"])
        assert not failed, result
        assert [s["pid"] for s in result["sessions"]] == [mine.info.backend_pid]
        assert alive(dba) and not alive(mine)

        result, failed = terminate(monkeypatch, server, superuser=False, action="terminate", application_name_filter=["dba"],
                                   allow_superuser=True)
        assert not failed and result["sessions"] == []
        assert "may not signal" in result["protected"][0]["reason"]
        assert alive(dba)

        result, failed = terminate(monkeypatch, server, action="terminate", application_name_filter=["dba"], allow_superuser=True)
        assert not failed and result["count"] == 1 and not alive(dba)


def test_blocking_only_and_pid_filter(monkeypatch, server):
    # closing(): the holder is terminated, so its context manager must not try to commit on exit.
    with closing(app_conn(server, "locker", autocommit=False)) as holder, app_conn(server, "waiter") as waiter:
        holder.execute("CREATE TABLE IF NOT EXISTS lock_demo (id int)")
        holder.commit()
        holder.execute("LOCK TABLE lock_demo IN ACCESS EXCLUSIVE MODE")
        thread, _outcome = in_thread(waiter, "SELECT count(*) FROM lock_demo")
        wait_until(lambda: terminate(monkeypatch, server, check=True, action="terminate", blocking_only=True)[0]["sessions"],
                   what="lock wait visible")
        result, failed = terminate(monkeypatch, server, action="terminate", blocking_only=True, pid=[holder.info.backend_pid, waiter.info.backend_pid])
        assert not failed and [s["pid"] for s in result["sessions"]] == [holder.info.backend_pid]
        thread.join(timeout=10)
        assert alive(waiter)


@pytest.mark.parametrize(("args", "option"), [
    ({}, "match_all:"),
    ({"client_addr": ["not-an-ip"]}, "client_addr:"),
    ({"state": ["active"], "max_targets": 0}, "max_targets:"),
    ({"min_duration": "soon"}, "min_duration:"),
    ({"query_pattern": ""}, "query_pattern:"),
    ({"pid": [0]}, "pid:"),
])
def test_bad_options_fail_before_connecting(monkeypatch, server, args, option):
    result, failed = terminate(monkeypatch, server, **args)
    assert failed and result["msg"].startswith(option), result
