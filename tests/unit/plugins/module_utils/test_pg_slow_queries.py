"""pg_slow_queries' statement guard and plan summary (no server needed)."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._pg_slow_queries import (
    ExplainRefused,
    check_explainable,
    filter_columns,
    findings,
    summarise_plan,
)


@pytest.mark.parametrize("statement, expected, params", [
    ("SELECT 1", "SELECT 1", 0),
    ("  select * from blocks where date = $1 and time_of_day = $2 ;  ", "select * from blocks where date = $1 and time_of_day = $2", 2),
    ("(SELECT 1) UNION (SELECT 2)", "(SELECT 1) UNION (SELECT 2)", 0),
    ("WITH w AS (SELECT 1 AS x) SELECT * FROM w", "WITH w AS (SELECT 1 AS x) SELECT * FROM w", 0),
    ("SELECT 'DELETE; INSERT' AS text", "SELECT 'DELETE; INSERT' AS text", 0),
    ("SELECT 'it''s; fine'", "SELECT 'it''s; fine'", 0),
    ("SELECT E'a\\'; DELETE FROM t; --'", "SELECT E'a\\'; DELETE FROM t; --'", 0),
    ("SELECT $$ ; DROP TABLE t; $$", "SELECT $$ ; DROP TABLE t; $$", 0),
    ("SELECT $body$ $1 ; $body$, $3", "SELECT $body$ $1 ; $body$, $3", 3),
    ('SELECT "delete", "a""b;" FROM "update"', 'SELECT "delete", "a""b;" FROM "update"', 0),
    ("SELECT 1 -- ; DELETE FROM t\n", "SELECT 1 -- ; DELETE FROM t", 0),
    ("/* DELETE; /* nested; */ still */ SELECT 1", "/* DELETE; /* nested; */ still */ SELECT 1", 0),
    ("SELECT 1;;", "SELECT 1", 0),
])
def test_accepts_one_select(statement, expected, params):
    assert check_explainable(statement) == (expected, params)


@pytest.mark.parametrize("statement, message", [
    ("", "explain: the statement is empty"),
    ("   ", "explain: the statement is empty"),
    ("DELETE FROM assignments", "explain: only a SELECT statement can be explained, got DELETE"),
    ("-- comment only", "explain: only a SELECT statement can be explained, got nothing"),
    ("SELECT 1; SELECT 2", "explain: only a single statement can be explained"),
    ("SELECT 1; DELETE FROM assignments", "explain: only a single statement can be explained"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "explain: only a read-only SELECT can be explained; it contains DELETE"),
    ("WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u", "it contains UPDATE"),
    ("SELECT * INTO copy_of_people FROM people", "it contains INTO"),
    ("SELECT * FROM t FOR UPDATE", "it contains UPDATE"),
    ("EXPLAIN ANALYZE DELETE FROM t", "got EXPLAIN"),
    ("TRUNCATE t", "got TRUNCATE"),
    ("VACUUM FULL", "got VACUUM"),
    ("SELECT 'unterminated", "explain: unterminated quoted string"),
    ('SELECT "unterminated', "explain: unterminated quoted identifier"),
    ("SELECT $x$ never closed", "explain: unterminated dollar-quoted string $x$"),
    ("SELECT 1 /* open", "explain: unterminated /* comment"),
])
def test_refuses_everything_else(statement, message):
    with pytest.raises(ExplainRefused) as refused:
        check_explainable(statement)
    assert str(refused.value).startswith("explain: ") and message in str(refused.value)


@pytest.mark.parametrize("statement", [
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
    "SELECT pg_catalog.pg_cancel_backend(42)",
    "SELECT set_config('work_mem', '1GB', false)",
    "SELECT * FROM dblink('host=x', 'DELETE FROM t') AS t(a int)",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_stat_statements_reset()",
])
def test_analyze_refuses_side_effect_functions(statement):
    assert check_explainable(statement)[1] == 0  # plain EXPLAIN does not run it: fine
    with pytest.raises(ExplainRefused, match="^explain_analyze: refusing to execute a statement that calls"):
        check_explainable(statement, analyze=True)


PLAN = [{
    "Plan": {"Node Type": "Hash Join", "Total Cost": 812.5, "Plan Rows": 40, "Actual Rows": 38, "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "assignments", "Filter": "(person_id = 7)", "Plan Rows": 40, "Actual Rows": 38},
        {"Node Type": "Hash", "Plans": [
            {"Node Type": "Index Scan", "Relation Name": "blocks", "Index Name": "blocks_pkey"},
        ]},
    ]},
    "Planning Time": 0.2, "Execution Time": 5.5,
}]


def test_summarise_plan():
    summary = summarise_plan(PLAN)
    assert summary["total_cost"] == 812.5 and summary["plan_rows"] == 40
    assert summary["node_types"] == {"Hash Join": 1, "Seq Scan": 1, "Hash": 1, "Index Scan": 1}
    assert summary["seq_scans"] == [{"relation": "assignments", "filter": "(person_id = 7)", "plan_rows": 40, "actual_rows": 38}]
    assert summary["index_scans"] == [{"relation": "blocks", "index": "blocks_pkey", "node_type": "Index Scan"}]
    assert summary["execution_time_ms"] == 5.5 and summary["planning_time_ms"] == 0.2 and summary["actual_rows"] == 38
    assert summary["plan"] is PLAN[0]["Plan"]


def test_summarise_plain_explain_has_no_timings():
    summary = summarise_plan([{"Plan": {"Node Type": "Result", "Total Cost": 0.01, "Plan Rows": 1}}])
    assert "execution_time_ms" not in summary and summary["seq_scans"] == []


def test_findings_for_unavailable_extension_and_unexplained_statement():
    result = {
        "pg_stat_statements": {"available": False, "reason": "not preloaded", "how_to_enable": "add it"},
        "tables": [{"schema": "public", "table": "assignments", "n_live_tup": 50000, "seq_scan": 90, "idx_scan": None,
                    "avg_rows_per_seq_scan": 50000.0, "missing_index_suspect": True}],
        "unused_indexes": [{"size_bytes": 1000}, {"size_bytes": 24}],
        "explain": {"explained": False, "reason": "has parameters"},
    }
    lines = findings(result, {"min_duration": 1.0})
    assert lines == [
        "pg_stat_statements unavailable: not preloaded; to enable: add it",
        "public.assignments (50000 rows): 90 sequential scans vs 0 index scans, 50000.0 rows read per scan: missing index?",
        "2 indexes never used since statistics were reset (1024 bytes)",
        "explain not possible: has parameters",
    ]


@pytest.mark.parametrize("text, equality, ranged", [
    ("(person_id = 7)", ["person_id"], []),
    ("((person_id = 7) AND (role = 'primary'::text))", ["person_id", "role"], []),
    ("((date >= $1) AND (person_id = $2))", ["person_id"], ["date"]),
    ("(\"Odd Name\" = 3)", [], []),  # a quoted name with a space is not guessed
    ("(lower(email) = 'a@b'::text)", [], []),  # an expression needs an expression index, not a column one
    ("(deleted_at IS NULL)", ["deleted_at"], []),
    (None, [], []),
])
def test_filter_columns(text, equality, ranged):
    assert filter_columns(text) == (equality, ranged)
