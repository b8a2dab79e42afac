"""pg_activity against a real PostgreSQL 15 started by the test session (tests/integration/_postgres.py)."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import psycopg
import pytest

from ansible_collections.sre.runbooks.plugins.modules import pg_activity
from tests.unit.plugins.modules.utils import run_module

from .conftest import free_port

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]


def activity(monkeypatch, server, superuser=True, **args):
    full = server.module_args(superuser=superuser)
    full.update(args)
    return run_module(monkeypatch, pg_activity.main, full)


def app_connection(server, application_name, autocommit=True):
    return server.connect(superuser=False, autocommit=autocommit, dbname=server.app_database, application_name=application_name)


def pids_of(server, application_name, condition="true"):
    with server.connect() as conn:
        rows = conn.execute(f"SELECT pid FROM pg_stat_activity WHERE application_name = %s AND {condition}",  # condition: test constant
                            (application_name,)).fetchall()
    return sorted(row[0] for row in rows)


def run_in_thread(conn, statement):
    """Run ``statement`` on ``conn`` in a thread; errors (cancellation) are kept, not raised."""
    outcome = {}

    def target():
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_counts_breakdowns_settings_and_own_session_excluded(monkeypatch, postgres_server):
    with ExitStack() as stack:
        for _unused in range(3):
            stack.enter_context(app_connection(postgres_server, "bd-app"))
        result, failed = activity(monkeypatch, postgres_server, filter_application_name=["bd-app"], application_name="sre-self")
    assert not failed, result
    assert result["changed"] is False
    assert result["breakdown"]["application_name"] == {"bd-app": 3}
    assert result["breakdown"]["state"] == {"idle": 3}
    assert result["breakdown"]["user"] == {"scheduler": 3}
    assert result["breakdown"]["client_addr"] == {"127.0.0.1": 3}
    assert result["breakdown"]["database"] == {"residency_scheduler": 3}
    assert result["selected_total"] == 3 and result["filtered"] is True
    usage = result["usage"]
    assert usage["max_connections"] == postgres_server.max_connections
    assert usage["superuser_reserved_connections"] == 3
    assert "reserved_connections" not in usage  # PostgreSQL 15 has no such setting
    assert usage["total"] >= 3
    assert usage["available_for_normal_users"] == usage["normal_slots"] - usage["total"]
    assert usage["usage_percent"] == round(100 * usage["total"] / usage["max_connections"], 1)
    assert result["settings"]["max_connections"] == str(postgres_server.max_connections)
    # The module's own 30s statement_timeout is not what the server's sessions get.
    assert result["settings"]["statement_timeout"] == "0"
    assert {"idle_in_transaction_session_timeout", "idle_session_timeout", "tcp_keepalives_idle"} <= set(result["settings"])
    assert result["backend_types"]["checkpointer"] == 1
    assert result["own_pid"] not in pids_of(postgres_server, "bd-app")


def test_own_session_is_not_counted(monkeypatch, postgres_server):
    result, failed = activity(monkeypatch, postgres_server, filter_application_name=["sre-self-only"], application_name="sre-self-only")
    assert not failed, result
    assert result["selected_total"] == 0
    assert result["breakdown"]["application_name"] == {}


def test_long_running_statement_found_and_truncated(monkeypatch, postgres_server):
    conn = app_connection(postgres_server, "sleeper")
    thread, outcome = run_in_thread(conn, "SELECT pg_sleep(20) /* a long comment that makes the query text long */")
    try:
        postgres_server.wait_until(
            lambda: pids_of(postgres_server, "sleeper", "state = 'active' AND now() - query_start > interval '0.4 s'"), what="sleeper active")
        result, failed = activity(monkeypatch, postgres_server, long_running_threshold="0.3", query_max_length=20)
        quiet, _unused = activity(monkeypatch, postgres_server, long_running_threshold="1m")
    finally:
        with postgres_server.connect() as admin:
            admin.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'sleeper'")
        thread.join(10)
        conn.close()
    assert not failed, result
    sleeper = [s for s in result["long_running"] if s["application_name"] == "sleeper"]
    assert len(sleeper) == 1
    assert sleeper[0]["duration_seconds"] >= 0.4
    assert sleeper[0]["query"] == "SELECT pg_sleep(20)…" and len(sleeper[0]["query"]) == 20
    assert sleeper[0]["wait_event"] == "PgSleep"
    assert result["long_running_count"] >= 1
    assert any("active longer than 0.3s" in line for line in result["findings"])
    assert not [s for s in quiet["long_running"] if s["application_name"] == "sleeper"]
    assert "error" in outcome  # it was cancelled, not finished


def test_idle_in_transaction_with_threshold(monkeypatch, postgres_server):
    with app_connection(postgres_server, "forgot-commit", autocommit=False) as conn:
        conn.execute("SELECT 42 AS last_statement")
        time.sleep(0.3)
        result, failed = activity(monkeypatch, postgres_server, idle_in_transaction_threshold="0.2s")
        above, _unused = activity(monkeypatch, postgres_server, idle_in_transaction_threshold="1h")
        conn.rollback()
    assert not failed, result
    found = [s for s in result["idle_in_transaction"] if s["application_name"] == "forgot-commit"]
    assert len(found) == 1
    assert found[0]["idle_seconds"] >= 0.2 and found[0]["transaction_seconds"] >= found[0]["idle_seconds"]
    assert found[0]["query"] == "SELECT 42 AS last_statement"
    assert found[0]["state"] == "idle in transaction"
    assert not [s for s in above["idle_in_transaction"] if s["application_name"] == "forgot-commit"]


@pytest.fixture()
def lock_chain(postgres_server):
    """Session A holds a row lock; B waits for A; C waits for B (tuple lock queue). Yields the three pids."""
    with postgres_server.connect(superuser=False, dbname=postgres_server.app_database) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS lock_demo (id int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO lock_demo VALUES (1, 0) ON CONFLICT DO NOTHING")
    holder = app_connection(postgres_server, "chain-a", autocommit=False)
    waiters = [app_connection(postgres_server, name) for name in ("chain-b", "chain-c")]
    holder.execute("UPDATE lock_demo SET v = v + 1 WHERE id = 1")
    threads = []
    try:
        for index, conn in enumerate(waiters):
            threads.append(run_in_thread(conn, "UPDATE lock_demo SET v = v + 1 WHERE id = 1")[0])
            postgres_server.wait_until(lambda n=index: pids_of(postgres_server, f"chain-{'bc'[n]}", "wait_event_type = 'Lock'"), what="waiter blocked")
        pids = [pids_of(postgres_server, name)[0] for name in ("chain-a", "chain-b", "chain-c")]
        yield pids
    finally:
        holder.rollback()
        for thread in threads:
            thread.join(10)
        holder.close()
        for conn in waiters:
            conn.close()


def test_blocking_chain_of_three_sessions(monkeypatch, postgres_server, lock_chain):
    a_pid, b_pid, c_pid = lock_chain
    result, failed = activity(monkeypatch, postgres_server)
    assert not failed, result
    blocking = result["blocking"]
    roots = {root["pid"]: root for root in blocking["root_blockers"]}
    assert list(roots) == [a_pid]
    assert roots[a_pid]["blocked_total"] == 2
    assert roots[a_pid]["application_name"] == "chain-a"
    assert roots[a_pid]["state"] == "idle in transaction"
    blocked = {entry["pid"]: entry for entry in blocking["blocked"]}
    assert set(blocked) == {b_pid, c_pid}
    assert blocked[b_pid]["blocked_by"] == [a_pid]
    assert [a_pid, b_pid, c_pid] in blocking["chains"]
    assert blocking["deadlock_cycle_pids"] == []
    assert any(f"pid {a_pid}" in line and "blocks 2 sessions" in line for line in result["findings"])

    # Filtering on the last waiter still names the root blocker (chains are built over every session).
    filtered, failed = activity(monkeypatch, postgres_server, filter_application_name=["chain-c"])
    assert not failed, filtered
    assert [root["pid"] for root in filtered["blocking"]["root_blockers"]] == [a_pid]
    assert filtered["breakdown"]["application_name"] == {"chain-c": 1}


def test_leak_suspect_between_two_samples(monkeypatch, postgres_server):
    opened = []
    steady = [app_connection(postgres_server, "steady-app") for _unused in range(2)]
    shrinking = [app_connection(postgres_server, "shrinking-app") for _unused in range(3)]

    # One watcher connection for the whole test, so it is in both samples and their totals compare.
    watcher = postgres_server.connect()

    def first_sample_taken():
        return watcher.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'leak-probe' "
                               "AND query LIKE '%%SELECT pid, usename%%'").fetchall()

    def leak_later():
        # Start leaking once the module's session has taken its first sample.
        postgres_server.wait_until(first_sample_taken, what="first sample taken")
        for _unused in range(3):
            opened.append(app_connection(postgres_server, "leaky-app"))
        opened.append(app_connection(postgres_server, "slow-grower"))
        for conn in shrinking[:2]:
            conn.close()

    thread = threading.Thread(target=leak_later, daemon=True)
    thread.start()
    try:
        result, failed = activity(monkeypatch, postgres_server, sample_interval=1.5, sample_count=2, leak_min_growth=2,
                                  application_name="leak-probe")
    finally:
        thread.join(10)
        for conn in opened + steady + shrinking + [watcher]:
            conn.close()
    assert not failed, result
    suspects = {s["application_name"]: s for s in result["leak_suspects"]}
    assert set(suspects) == {"leaky-app"}, result["leak_suspects"]
    assert suspects["leaky-app"]["idle_counts"] == [0, 3]
    assert suspects["leaky-app"]["growth"] == 3
    assert suspects["leaky-app"]["user"] == "scheduler"
    assert len(result["samples"]) == 2
    assert result["samples"][1]["total"] - result["samples"][0]["total"] == 4 - 2
    assert any("possible connection leak: leaky-app" in line for line in result["findings"])


def test_pool_exhausted_superuser_still_sees_numbers(monkeypatch, postgres_server):
    held = []
    try:
        refused = None
        for _unused in range(postgres_server.max_connections + 1):
            try:
                held.append(app_connection(postgres_server, "pool-filler"))
            except psycopg.OperationalError as exc:
                refused = exc
                break
        assert refused is not None and "reserved" in str(refused)

        as_app, app_failed = activity(monkeypatch, postgres_server, superuser=False)
        result, failed = activity(monkeypatch, postgres_server, superuser=True)
    finally:
        for conn in held:
            conn.close()
    assert app_failed
    assert as_app["msg"].startswith("user: the server has no free connection slots for 'scheduler'")
    assert as_app["option"] == "user"
    assert not failed, result
    normal_slots = postgres_server.max_connections - 3
    assert result["usage"]["normal_slots"] == normal_slots
    assert result["usage"]["total"] == normal_slots
    assert result["usage"]["available_for_normal_users"] == 0
    assert result["usage"]["usage_percent"] == round(100 * normal_slots / postgres_server.max_connections, 1)
    assert result["usage"]["normal_usage_percent"] == 100.0
    assert result["breakdown"]["application_name"]["pool-filler"] == len(held)
    assert any("the pool is exhausted" in line for line in result["findings"])


def test_injection_strings_are_values(monkeypatch, postgres_server):
    hostile = "x'; DROP TABLE injection_canary; --"
    with postgres_server.connect(superuser=False, dbname=postgres_server.app_database) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS injection_canary (id int)")
    with app_connection(postgres_server, hostile):
        result, failed = activity(monkeypatch, postgres_server, filter_application_name=[hostile], filter_user=["scheduler' OR '1'='1", "scheduler"])
        as_option, option_failed = activity(monkeypatch, postgres_server, application_name=hostile, filter_database=["nope' OR 1=1 --"])
    assert not failed, result
    assert result["breakdown"]["application_name"] == {hostile: 1}
    assert not option_failed, as_option
    assert as_option["selected_total"] == 0
    with postgres_server.connect(dbname=postgres_server.app_database) as conn:
        assert conn.execute("SELECT to_regclass('injection_canary') IS NOT NULL").fetchone()[0]


def test_check_mode_is_supported(monkeypatch, postgres_server):
    result, failed = activity(monkeypatch, postgres_server, _ansible_check_mode=True)
    assert not failed, result
    assert result["changed"] is False and "usage" in result


@pytest.mark.parametrize("override, option, text", [
    ({"password": "wrong-Secret-123"}, "password", "authentication failed for user 'postgres'"),
    ({"user": "nobody", "password": "wrong-Secret-123"}, "password", "check user and password"),
    ({"database": "no_such_db"}, "database", "database 'no_such_db' does not exist"),
    ({"port": "__free__"}, "host", "cannot reach PostgreSQL at 127.0.0.1:"),
])
def test_connection_errors_name_the_option(monkeypatch, postgres_server, override, option, text):
    if override.get("port") == "__free__":
        override = {"port": free_port()}
    result, failed = activity(monkeypatch, postgres_server, connect_timeout=2, **override)
    assert failed
    assert result["msg"].startswith(f"{option}:"), result["msg"]
    assert text in result["msg"]
    assert result["option"] == option
    assert "wrong-Secret-123" not in repr(result)
    assert postgres_server.superuser_password not in repr(result)


def test_unix_socket_connection(monkeypatch, postgres_server):
    result, failed = activity(monkeypatch, postgres_server, host=None, login_unix_socket=postgres_server.socket_dir)
    assert not failed, result
    missing, missing_failed = activity(monkeypatch, postgres_server, login_unix_socket="/nonexistent-socket-dir")
    assert missing_failed and missing["msg"].startswith("login_unix_socket:"), missing


def test_unprivileged_role_is_told_what_it_cannot_see(monkeypatch, postgres_server):
    with postgres_server.connect(application_name="superuser-session"):
        result, failed = activity(monkeypatch, postgres_server, superuser=False)
        privileged, _unused = activity(monkeypatch, postgres_server)
    assert not failed, result
    assert result["limitations"] and "hidden from this user" in result["limitations"][0]
    assert result["breakdown"]["state"].get("(unknown)", 0) >= 1  # other roles' states are NULL for it
    assert privileged["limitations"] == []
