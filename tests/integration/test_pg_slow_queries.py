"""pg_slow_queries against a real PostgreSQL 15 started by the test session (tests/integration/_postgres.py)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from ansible_collections.sre.runbooks.plugins.modules import pg_slow_queries
from tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]

SEQ_QUERY = "SELECT count(*) FROM slow_assignments WHERE person_id = %s"
ROWS = 20000


def slow(monkeypatch, server, **args):
    full = server.module_args()
    full.update(args)
    return run_module(monkeypatch, pg_slow_queries.main, full)


@pytest.fixture(scope="module")
def workload(postgres_server):
    """A table read by an unindexed column (sequential scans dominate), one read through its index, an unused index."""
    with postgres_server.connect(superuser=False, dbname=postgres_server.app_database) as app:
        app.execute("DROP TABLE IF EXISTS slow_assignments, indexed_people")
        app.execute("CREATE TABLE slow_assignments (id serial PRIMARY KEY, person_id int, block_id int, role text)")
        app.execute("CREATE INDEX slow_assignments_block_idx ON slow_assignments (block_id)")
        app.execute(f"INSERT INTO slow_assignments (person_id, block_id, role) SELECT g % 500, g % 730, 'primary' FROM generate_series(1, {ROWS}) g")
        app.execute("CREATE TABLE indexed_people (id int PRIMARY KEY, name text)")
        app.execute("INSERT INTO indexed_people SELECT g, 'p' || g FROM generate_series(1, 15000) g")
    # ANALYZE once the inserts' statistics are flushed (at session end), or n_live_tup counts them twice.
    with postgres_server.connect(superuser=False, dbname=postgres_server.app_database) as app:
        app.execute("ANALYZE slow_assignments, indexed_people")
        for person in range(12):
            app.execute(SEQ_QUERY, (person,))
        for person in range(30):
            app.execute("SELECT name FROM indexed_people WHERE id = %s", (person + 1,))
    # The app session has ended, so its table statistics are flushed; wait until they are visible.
    with postgres_server.connect(dbname=postgres_server.app_database) as conn:
        postgres_server.wait_until(lambda: conn.execute(
            "SELECT seq_scan >= 12 FROM pg_stat_user_tables WHERE relname = 'slow_assignments'").fetchone()[0], what="stats flushed")
    return postgres_server


def test_top_statements_sorted_and_own_queries_left_out(monkeypatch, workload):
    results = {}
    for order in ("total_exec_time", "mean_exec_time", "calls", "rows"):
        result, failed = slow(monkeypatch, workload, order_by=order, top=5, sections=["statements"])
        assert not failed, result
        assert result["pg_stat_statements_available"] is True
        results[order] = result
    column = {"total_exec_time": "total_ms", "mean_exec_time": "mean_ms", "calls": "calls", "rows": "rows"}
    for order, result in results.items():
        values = [s[column[order]] for s in result["statements"]]
        assert values == sorted(values, reverse=True), order
        assert len(values) <= 5
    # Other tests share this server (one per pytest worker): look past the top 5 for the workload's statement.
    everything, failed = slow(monkeypatch, workload, order_by="calls", top=1000, sections=["statements"])
    assert not failed, everything
    by_calls = everything["statements"]
    seq = [s for s in by_calls if s["query"] == "SELECT count(*) FROM slow_assignments WHERE person_id = $1"]
    assert seq and seq[0]["calls"] == 12 and seq[0]["rows"] == 12 and seq[0]["user"] == "scheduler"
    assert seq[0]["database"] == "residency_scheduler"
    assert 0 <= seq[0]["hit_ratio"] <= 1 and seq[0]["mean_ms"] > 0
    # A second run does not see the first run's diagnostic statements.
    assert not [s for s in by_calls if "sre.runbooks pg_slow_queries" in s["query"]]
    assert results["calls"]["pg_stat_statements"]["version"]


def test_missing_index_suspect_and_unused_index(monkeypatch, workload):
    result, failed = slow(monkeypatch, workload, sections=["tables", "unused_indexes"], missing_index_min_rows=10000)
    assert not failed, result
    tables = {t["table"]: t for t in result["tables"]}
    suspect = tables["slow_assignments"]
    assert suspect["missing_index_suspect"] is True
    assert suspect["seq_scan"] >= 12 and suspect["seq_tup_read"] >= 12 * ROWS
    assert suspect["n_live_tup"] == ROWS
    assert result["missing_index_suspects"] == ["public.slow_assignments"]
    assert "indexed_people" not in tables or tables["indexed_people"]["missing_index_suspect"] is False
    assert any("slow_assignments" in line and "missing index?" in line for line in result["findings"])
    unused = {i["index"] for i in result["unused_indexes"]}
    assert "slow_assignments_block_idx" in unused
    assert "slow_assignments_pkey" not in unused and "indexed_people_pkey" not in unused  # they enforce a constraint
    assert "statements" not in result

    above, failed = slow(monkeypatch, workload, sections=["tables"], missing_index_min_rows=ROWS + 1)
    assert not failed and above["missing_index_suspects"] == []


def test_running_statements(monkeypatch, workload):
    conn = workload.connect(superuser=False, dbname=workload.app_database, application_name="slow-report")
    thread = threading.Thread(target=lambda: _swallow(conn, "SELECT pg_sleep(20)"), daemon=True)
    thread.start()
    try:
        workload.wait_until(lambda: _active_for(workload, "slow-report", 0.4), what="statement running")
        result, failed = slow(monkeypatch, workload, sections=["running"], min_duration="0.3s")
        none_yet, _unused = slow(monkeypatch, workload, sections=["running"], min_duration="10m")
    finally:
        with workload.connect() as admin:
            admin.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'slow-report'")
        thread.join(10)
        conn.close()
    assert not failed, result
    mine = [r for r in result["running"] if r["application_name"] == "slow-report"]
    assert len(mine) == 1 and mine[0]["duration_seconds"] >= 0.4 and mine[0]["query"] == "SELECT pg_sleep(20)"
    assert not [r for r in none_yet["running"] if r["application_name"] == "slow-report"]


def _swallow(conn, statement):
    try:
        conn.execute(statement)
    except psycopg.Error:
        pass


def _active_for(server, application_name, seconds):
    with server.connect() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'"
                            " AND now() - query_start > make_interval(secs => %s)", (application_name, seconds)).fetchone()[0]


def test_explain_plain_does_not_execute(monkeypatch, workload):
    started = time.monotonic()
    result, failed = slow(monkeypatch, workload, sections=[],
                          explain="SELECT *, pg_sleep(5) FROM slow_assignments WHERE person_id = 7;")
    assert not failed, result
    assert time.monotonic() - started < 4  # pg_sleep(5) per row would take ages had it run
    plan = result["explain"]
    assert plan["explained"] is True and plan["analyze"] is False
    assert [s["relation"] for s in plan["seq_scans"]] == ["slow_assignments"]
    assert "(person_id = 7)" in plan["seq_scans"][0]["filter"]
    assert "execution_time_ms" not in plan
    assert plan["plan"]["Node Type"] == "Seq Scan"


def test_explain_analyze_uses_index(monkeypatch, workload):
    result, failed = slow(monkeypatch, workload, sections=[], explain_analyze=True,
                          explain="WITH wanted AS (SELECT 5 AS id) SELECT name FROM indexed_people JOIN wanted USING (id)")
    assert not failed, result
    plan = result["explain"]
    assert plan["analyze"] is True and plan["execution_time_ms"] >= 0
    assert plan["actual_rows"] == 1
    assert [s["index"] for s in plan["index_scans"]] == ["indexed_people_pkey"]


@pytest.mark.parametrize("statement, expected", [
    ("DELETE FROM slow_assignments", "explain: only a SELECT statement can be explained, got DELETE"),
    ("SELECT 1; DELETE FROM slow_assignments", "explain: only a single statement can be explained"),
    ("WITH gone AS (DELETE FROM slow_assignments RETURNING *) SELECT count(*) FROM gone", "it contains DELETE"),
    ("SELECT * INTO stolen FROM slow_assignments", "it contains INTO"),
    ("UPDATE slow_assignments SET role = 'x'", "got UPDATE"),
])
def test_explain_refuses_anything_but_one_select(monkeypatch, workload, statement, expected):
    result, failed = slow(monkeypatch, workload, explain=statement, explain_analyze=True)
    assert failed
    assert expected in result["msg"] and result["msg"].startswith("explain:")
    with workload.connect(dbname=workload.app_database) as conn:
        assert conn.execute("SELECT count(*) FROM slow_assignments").fetchone()[0] == ROWS
        assert conn.execute("SELECT to_regclass('stolen')").fetchone()[0] is None


def test_explain_analyze_cannot_write_even_through_a_function(monkeypatch, workload):
    with workload.connect(superuser=False, dbname=workload.app_database) as app:
        app.execute("CREATE OR REPLACE FUNCTION wipe() RETURNS int LANGUAGE sql AS 'DELETE FROM slow_assignments RETURNING 1'")
    result, failed = slow(monkeypatch, workload, sections=[], explain="SELECT wipe()", explain_analyze=True)
    assert failed and result["msg"].startswith("explain: PostgreSQL could not explain"), result
    assert "read-only transaction" in result["msg"]
    with workload.connect(dbname=workload.app_database) as conn:
        assert conn.execute("SELECT count(*) FROM slow_assignments").fetchone()[0] == ROWS


def test_explain_with_parameters_on_15(monkeypatch, workload):
    statement = "SELECT * FROM slow_assignments WHERE person_id = $1 AND role = $2"
    result, failed = slow(monkeypatch, workload, sections=[], explain=statement)
    assert not failed, result
    assert result["explain"]["explained"] is False and result["explain"]["parameters"] == 2
    assert "GENERIC_PLAN" in result["explain"]["reason"] and "explain_params" in result["explain"]["reason"]

    hostile = "x'; DROP TABLE slow_assignments; --"
    result, failed = slow(monkeypatch, workload, sections=[], explain=statement, explain_params=["7", hostile])
    assert not failed, result
    assert result["explain"]["explained"] is True
    assert "(person_id = 7)" in result["explain"]["seq_scans"][0]["filter"]
    assert "DROP TABLE" in result["explain"]["seq_scans"][0]["filter"]  # the value, quoted, inside the filter
    with workload.connect(dbname=workload.app_database) as conn:
        assert conn.execute("SELECT count(*) FROM slow_assignments").fetchone()[0] == ROWS

    result, failed = slow(monkeypatch, workload, sections=[], explain=statement, explain_params=["7"])
    assert failed and result["msg"].startswith("explain_params: the statement has 2 parameter(s)")


def test_explain_queryid_from_pg_stat_statements(monkeypatch, workload):
    top, failed = slow(monkeypatch, workload, sections=["statements"], order_by="calls", top=20)
    assert not failed, top
    queryid = next(s["queryid"] for s in top["statements"] if "FROM slow_assignments WHERE person_id = $1" in s["query"])
    result, failed = slow(monkeypatch, workload, sections=[], explain_queryid=queryid, explain_params=["3"])
    assert not failed, result
    assert result["explain"]["statement"] == "SELECT count(*) FROM slow_assignments WHERE person_id = $1"
    assert result["explain"]["seq_scans"][0]["relation"] == "slow_assignments"
    missing, failed = slow(monkeypatch, workload, sections=[], explain_queryid=42)
    assert failed and missing["msg"] == "explain_queryid: no statement with queryid 42 in pg_stat_statements"


def test_query_timeout_names_the_option(monkeypatch, workload):
    result, failed = slow(monkeypatch, workload, sections=[], explain="SELECT pg_sleep(3)", explain_analyze=True, query_timeout="0.3s")
    assert failed and result["msg"].startswith("query_timeout:"), result


def test_extension_not_created_is_a_finding(monkeypatch, workload):
    result, failed = slow(monkeypatch, workload, database="postgres")
    assert not failed, result
    assert result["pg_stat_statements_available"] is False
    status = result["pg_stat_statements"]
    assert status["preloaded"] is True and status["installed"] is False
    assert "not created in database postgres" in status["reason"]
    assert "CREATE EXTENSION pg_stat_statements" in status["how_to_enable"]
    assert "statements" not in result
    assert any(line.startswith("pg_stat_statements unavailable") for line in result["findings"])


def test_extension_not_preloaded_is_a_finding(monkeypatch, postgres_server):
    from tests.integration._postgres import PostgresServer  # pylint: disable=import-outside-toplevel
    with PostgresServer(max_connections=10, extra_conf={"shared_preload_libraries": "''"}) as bare:
        result, failed = slow(monkeypatch, bare)
        queryid, queryid_failed = slow(monkeypatch, bare, explain_queryid=1)
    assert not failed, result
    assert result["pg_stat_statements_available"] is False
    assert result["pg_stat_statements"]["installed"] is True and result["pg_stat_statements"]["preloaded"] is False
    assert "shared_preload_libraries" in result["pg_stat_statements"]["reason"]
    assert "tables" in result  # the other sections still work
    assert queryid_failed and queryid["msg"].startswith("explain_queryid: pg_stat_statements is not available")


def test_unknown_database_names_the_option(monkeypatch, postgres_server):
    result, failed = slow(monkeypatch, postgres_server, database="nowhere")
    assert failed and result["msg"].startswith("database: database 'nowhere' does not exist")


def test_unprivileged_role_is_told_about_hidden_statements(monkeypatch, workload):
    result, failed = slow(monkeypatch, workload, user=workload.app_user, password=workload.app_password, sections=["statements"], top=50)
    assert not failed, result
    assert any("<insufficient privilege>" in line for line in result["limitations"])  # the superuser's statements
    privileged, _unused = slow(monkeypatch, workload, sections=["statements"], top=50)
    assert privileged["limitations"] == []


def test_explain_names_the_missing_index_and_creates_nothing(monkeypatch, workload):
    result, failed = slow(monkeypatch, workload, sections=[],
                          explain="SELECT * FROM slow_assignments WHERE person_id = 7 AND role = 'primary' AND block_id > 3")
    assert not failed, result
    [candidate] = result["explain"]["index_candidates"]
    assert candidate["columns"] == ["person_id", "role", "block_id"]  # equality columns first, then one range column
    assert candidate["table"] == "public.slow_assignments" and candidate["exists"] is False
    assert candidate["definition"] == "CREATE INDEX CONCURRENTLY slow_assignments_person_id_role_block_id_idx " \
                                      "ON public.slow_assignments (person_id, role, block_id)"
    assert any(line.startswith("missing index: CREATE INDEX CONCURRENTLY") for line in result["findings"])
    with workload.connect(dbname=workload.app_database) as conn:
        indexes = [r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'slow_assignments'")]
    assert "slow_assignments_person_id_role_block_id_idx" not in indexes


def test_small_tables_get_no_index_advice(monkeypatch, workload):
    result, failed = slow(monkeypatch, workload, sections=[], missing_index_min_rows=1_000_000,
                          explain="SELECT * FROM slow_assignments WHERE person_id = 7")
    assert not failed, result
    assert result["explain"]["seq_scans"] and result["explain"]["index_candidates"] == []
