#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_slow_queries
short_description: Top statements from pg_stat_statements, statements running now, index usage and EXPLAIN of a SELECT
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Answers the SlowDatabaseQueries and SlowResponseTime runbook steps, namely identifying slow queries, reviewing query execution
    plans, checking index usage and analysing query patterns.
  - RV(statements) are the top statements of C(pg_stat_statements) by O(order_by). When the extension is not preloaded or not
    created, the module does not fail; it returns RV(pg_stat_statements_available=false) with the reason and how to enable it.
  - RV(tables) compares sequential and index scans per table of O(database) and flags likely missing indexes;
    RV(unused_indexes) lists indexes never scanned.
  - O(explain) or O(explain_queryid) adds the plan of one SELECT. Plain C(EXPLAIN) with C(FORMAT JSON) does not run the statement;
    C(ANALYZE) is only used with O(explain_analyze=true). Either way it runs inside a C(READ ONLY) transaction that is rolled back.
  - Read-only; never changes anything and runs fully in check mode. Its own statements are left out of RV(statements).
extends_documentation_fragment:
  - sre.runbooks.postgres
options:
  sections:
    description: What to collect. Leave out sections you do not need to make the call cheaper.
    type: list
    elements: str
    choices: [statements, running, tables, unused_indexes]
    default: [statements, running, tables, unused_indexes]
  top:
    description: How many statements, running statements, tables and unused indexes to return at most.
    type: int
    default: 10
  order_by:
    description: The C(pg_stat_statements) column the top statements are sorted by, descending.
    type: str
    choices: [total_exec_time, mean_exec_time, max_exec_time, calls, rows, shared_blks_read]
    default: total_exec_time
  min_calls:
    description: Leave out statements called fewer times than this.
    type: int
    default: 1
  all_databases:
    description: Include statements of every database, not only O(database).
    type: bool
    default: false
  query_max_length:
    description: Query texts are cut to this many characters (V(0) = whole text).
    type: int
    default: 500
  min_duration:
    description: Statements active for longer than this right now are listed in RV(running). Seconds or a duration such as V(1s), V(500ms).
    type: str
    default: 1s
  missing_index_min_rows:
    description:
      - A table in RV(tables) is a C(missing_index_suspect) only when it has at least this many live rows.
      - Small tables are scanned sequentially on purpose.
    type: int
    default: 10000
  explain:
    description:
      - One SELECT statement (or C(WITH ... SELECT)) to explain. Anything else, several statements, data-modifying CTEs
        and C(SELECT INTO) are refused.
      - Parameters written as V($1), V($2) need O(explain_params) on PostgreSQL 15 (C(GENERIC_PLAN) is PostgreSQL 16+);
        without them C(explained) in RV(explain) is V(false) with the reason.
    type: str
  explain_queryid:
    description: Explain the statement of this C(queryid) from C(pg_stat_statements) (its text has V($n) parameters for constants).
    type: int
  explain_params:
    description: Values for the V($1), V($2) ... parameters of the explained statement, in order, as text PostgreSQL casts to each parameter's type.
    type: list
    elements: str
  explain_analyze:
    description:
      - Run C(EXPLAIN) with C(ANALYZE, BUFFERS), which executes the statement (still read-only, rolled back, bounded by O(query_timeout)).
      - Statements calling functions with side effects that a read-only transaction does not stop (C(pg_terminate_backend),
        C(dblink), C(set_config), advisory locks, ...) are refused.
    type: bool
    default: false
notes:
  - Needs C(pg_stat_statements) in C(shared_preload_libraries) and C(CREATE EXTENSION pg_stat_statements) in O(database) for RV(statements).
  - Other roles' statements show C(<insufficient privilege>) unless O(user) is a superuser or a member of C(pg_read_all_stats) / C(pg_monitor).
seealso:
  - module: sre.runbooks.pg_activity
  - name: pg_stat_statements
    description: The extension the top statements come from.
    link: https://www.postgresql.org/docs/15/pgstatstatements.html
"""

EXAMPLES = r"""
- name: Ten statements with the highest mean time, and tables that look like they miss an index
  sre.runbooks.pg_slow_queries:
    host: db.example.org
    user: monitor
    password: "{{ vault_pg_monitor_password }}"
    database: residency_scheduler
    order_by: mean_exec_time
    missing_index_min_rows: 50000
  register: slow

- name: Plan of the slowest statement, with the values it is usually called with
  sre.runbooks.pg_slow_queries:
    host: db.example.org
    database: residency_scheduler
    sections: []
    explain_queryid: "{{ slow.statements[0].queryid }}"
    explain_params: ["2026-11-23", "AM"]
  when: slow.pg_stat_statements_available and slow.statements | length > 0

- name: Plan of a statement written by hand
  sre.runbooks.pg_slow_queries:
    host: db.example.org
    database: residency_scheduler
    sections: [tables]
    explain: SELECT * FROM assignments WHERE person_id = '7d4c2b9e-0000-4000-8000-000000000001'
"""

RETURN = r"""
pg_stat_statements_available:
  description: Whether RV(statements) could be read.
  returned: always
  type: bool
pg_stat_statements:
  description:
    - C(available), C(preloaded), C(installed), C(version), C(schema), C(database); when unavailable also C(reason) and C(how_to_enable);
      when available C(stats_reset) and C(dealloc) (entries evicted since the reset) where the extension has them.
  returned: always
  type: dict
  sample: {"available": false, "preloaded": false, "installed": false, "reason": "pg_stat_statements is not in shared_preload_libraries ...",
           "how_to_enable": "add pg_stat_statements to shared_preload_libraries ..."}
statements:
  description:
    - Top statements with C(queryid), C(user), C(database), C(calls), C(rows), C(rows_per_call), C(total_ms), C(mean_ms), C(min_ms),
      C(max_ms), C(stddev_ms), C(percent_of_total_time), C(shared_blks_hit), C(shared_blks_read), C(hit_ratio) (buffer cache hits
      over blocks touched), C(temp_blks_written), C(io_read_ms), C(io_write_ms) (with C(track_io_timing)) and C(query).
  returned: when C(statements) is in O(sections) and pg_stat_statements is available
  type: list
  elements: dict
running:
  description:
    - Client statements active for longer than O(min_duration), longest first.
    - Each has C(pid), C(user), C(application_name), C(client_addr), C(database), C(wait_event_type), C(wait_event), C(duration_seconds), C(query).
  returned: when C(running) is in O(sections)
  type: list
  elements: dict
tables:
  description:
    - Tables of O(database) with C(seq_scan), C(seq_tup_read), C(idx_scan), C(idx_tup_fetch), C(n_live_tup), C(n_dead_tup),
      C(size_bytes), C(index_count), C(last_analyzed), C(seq_scan_ratio), C(avg_rows_per_seq_scan) and C(missing_index_suspect)
      (at least O(missing_index_min_rows) live rows and more sequential than index scans).
    - Every suspect is listed, then the other tables by rows read sequentially, up to O(top) in all.
  returned: when C(tables) is in O(sections)
  type: list
  elements: dict
missing_index_suspects:
  description: C(schema.table) of every table flagged C(missing_index_suspect).
  returned: when C(tables) is in O(sections)
  type: list
  elements: str
unused_indexes:
  description:
    - Indexes of O(database) never scanned since statistics were reset and not backing a unique, primary key or other constraint.
    - Largest first, with C(schema), C(table), C(index), C(idx_scan), C(size_bytes) and C(definition).
  returned: when C(unused_indexes) is in O(sections)
  type: list
  elements: dict
explain:
  description:
    - C(statement), C(parameters) (number of V($n)), C(analyze), C(generic_plan), C(explained). When explained, C(total_cost), C(plan_rows),
      C(node_types) (count per plan node type), C(seq_scans) and C(index_scans) (relations read that way) and C(plan) (the JSON plan);
      with O(explain_analyze) also C(execution_time_ms), C(planning_time_ms), C(actual_rows). When not explained, C(reason).
    - C(index_candidates) lists, for each filtered sequential scan of a table with at least O(missing_index_min_rows) rows, the
      index that would serve it (C(table), C(columns) (equality columns first, then one range column), C(name), C(definition), a
      C(CREATE INDEX CONCURRENTLY) statement, C(rows), C(filter)), and C(exists) with a C(note) when an index already leads with the
      first column. Nothing is created.
  returned: when O(explain) or O(explain_queryid) is set
  type: dict
  sample: {"explained": true, "total_cost": 1693.0, "plan_rows": 1, "seq_scans": [{"relation": "assignments", "filter": "(person_id = 42)"}]}
database:
  description: The database the per-database sections describe.
  returned: always
  type: str
server_version:
  description: The server's version string.
  returned: always
  type: str
server_version_num:
  description: The server's version as a number.
  returned: always
  type: int
limitations:
  description: Limits of what could be seen (each also a warning of the task), such as statement texts hidden by missing privileges.
  returned: always
  type: list
  elements: str
findings:
  description: One sentence per notable fact, for the incident report.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.sre.runbooks.plugins.module_utils._pg_slow_queries import ExplainRefused, check_explainable, collect
from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError, PostgresModule, parse_seconds


def options_from_params(params: dict) -> dict:
    """Validated collector options; raises ValueError naming the option."""
    for name, minimum in (("top", 1), ("min_calls", 0), ("query_max_length", 0), ("missing_index_min_rows", 0)):
        if params[name] < minimum:
            raise ValueError(f"{name}: must be at least {minimum}, got {params[name]}")
    if params["explain_params"] and params["explain"] is None and params["explain_queryid"] is None:
        raise ValueError("explain_params: only used with explain or explain_queryid")
    if params["explain"] is not None:
        check_explainable(params["explain"], analyze=params["explain_analyze"])  # refuse before connecting
    options = dict(params)
    options["min_duration"] = parse_seconds(params["min_duration"], "min_duration")
    return options


def main() -> None:
    module = PostgresModule(
        argument_spec={
            "sections": {"type": "list", "elements": "str", "choices": ["statements", "running", "tables", "unused_indexes"],
                         "default": ["statements", "running", "tables", "unused_indexes"]},
            "top": {"type": "int", "default": 10},
            "order_by": {"type": "str", "default": "total_exec_time",
                         "choices": ["total_exec_time", "mean_exec_time", "max_exec_time", "calls", "rows", "shared_blks_read"]},
            "min_calls": {"type": "int", "default": 1},
            "all_databases": {"type": "bool", "default": False},
            "query_max_length": {"type": "int", "default": 500},
            "min_duration": {"type": "str", "default": "1s"},
            "missing_index_min_rows": {"type": "int", "default": 10000},
            "explain": {"type": "str"},
            "explain_queryid": {"type": "int"},
            "explain_params": {"type": "list", "elements": "str"},
            "explain_analyze": {"type": "bool", "default": False},
        },
        mutually_exclusive=[("explain", "explain_queryid")],
        supports_check_mode=True,
    )
    try:
        options = options_from_params(module.params)
    except ExplainRefused as exc:
        module.fail_json(msg=str(exc), option="explain")
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    conn = module.connect()
    try:
        result = collect(conn, options, module_params=module.params)
    except ExplainRefused as exc:
        module.fail_json(msg=str(exc), option="explain")
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    except PostgresError as exc:
        module.fail_postgres(exc)
    finally:
        conn.close()
    module.exit_with_limitations({"changed": False, **result})


if __name__ == "__main__":
    main()
