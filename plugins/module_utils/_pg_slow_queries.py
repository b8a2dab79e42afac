# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Slow-query diagnostics: pg_stat_statements top statements, statements running now, sequential vs
index scans per table, unused indexes and EXPLAIN of one SELECT (SlowDatabaseQueries, SlowResponseTime)."""

from __future__ import annotations

import re
import secrets
from typing import Any

from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError, fetch_all, query_error, server_version_num, truncate

try:
    import psycopg
    from psycopg import sql
except ImportError:  # PostgresModule reports the missing library before anything here runs
    psycopg = None
    sql = None

ORDER_BY = ["total_exec_time", "mean_exec_time", "max_exec_time", "calls", "rows", "shared_blks_read"]
SECTIONS = ["statements", "running", "tables", "unused_indexes"]
# Every statement of this module carries this comment, so its own traffic is left out of the top list.
MARKER = "/* sre.runbooks pg_slow_queries */"
HOW_TO_ENABLE = ("add pg_stat_statements to shared_preload_libraries in postgresql.conf (needs a restart), "
                 "then run CREATE EXTENSION pg_stat_statements; in database {database} as a superuser")


class ExplainRefused(ValueError):
    """The statement given to explain is not a single read-only SELECT."""


# -- pg_stat_statements -------------------------------------------------------------------------

def stat_statements_status(conn, params: dict | None = None) -> dict[str, Any]:
    """Whether pg_stat_statements can be read here, and if not, why and how to enable it."""
    rows = fetch_all(conn, MARKER + """
        SELECT 'pg_stat_statements' = ANY(string_to_array(replace(
                   (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), ' ', ''), ',')) AS preloaded,
               current_database() AS database,
               (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements') AS version,
               (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_stat_statements') AS schema""",
                     what="checking for pg_stat_statements", module_params=params)
    row = rows[0]
    status: dict[str, Any] = {"available": False, "preloaded": row["preloaded"], "installed": row["version"] is not None,
                              "version": row["version"], "schema": row["schema"], "database": row["database"]}
    # preloaded is NULL when the role may not read shared_preload_libraries (superuser-only without
    # pg_read_all_settings); reading the view then tells (SQLSTATE 55000 when not preloaded).
    if row["preloaded"] is False:
        status["reason"] = "pg_stat_statements is not in shared_preload_libraries, so the server does not collect statement statistics"
    elif row["version"] is None:
        status["reason"] = f"the pg_stat_statements extension is not created in database {row['database']}"
    else:
        status["available"] = True
        return status
    status["how_to_enable"] = HOW_TO_ENABLE.format(database=row["database"])
    return status


def _io_time_columns(version: int) -> tuple[str, str]:
    # PostgreSQL 17 split blk_read_time into shared_/local_ variants.
    return ("shared_blk_read_time", "shared_blk_write_time") if version >= 170000 else ("blk_read_time", "blk_write_time")


def top_statements(conn, status: dict[str, Any], options: dict[str, Any], params: dict | None = None) -> list[dict[str, Any]]:
    """The top ``options['top']`` statements by ``options['order_by']`` (descending)."""
    if options["order_by"] not in ORDER_BY:
        raise ValueError(f"order_by: must be one of {', '.join(ORDER_BY)}, got {options['order_by']!r}")
    read_time, write_time = _io_time_columns(server_version_num(conn))
    query = sql.SQL(MARKER + """
        SELECT s.queryid, r.rolname AS user, d.datname AS database, s.calls, s.rows,
               s.total_exec_time, s.mean_exec_time, s.min_exec_time, s.max_exec_time, s.stddev_exec_time,
               s.shared_blks_hit, s.shared_blks_read, s.temp_blks_written,
               s.{read_time} AS io_read_time, s.{write_time} AS io_write_time,
               100 * s.total_exec_time / NULLIF(sum(s.total_exec_time) OVER (), 0) AS percent_of_total_time,
               left(s.query, %(length)s) AS query
        FROM {schema}.pg_stat_statements AS s
        LEFT JOIN pg_roles AS r ON r.oid = s.userid
        LEFT JOIN pg_database AS d ON d.oid = s.dbid
        WHERE (%(all_databases)s OR d.datname = current_database())
          AND s.calls >= %(min_calls)s
          AND s.query NOT LIKE %(marker)s
        ORDER BY s.{order_by} DESC NULLS LAST
        LIMIT %(top)s""").format(
        schema=sql.Identifier(status["schema"]), order_by=sql.Identifier(options["order_by"]),
        read_time=sql.Identifier(read_time), write_time=sql.Identifier(write_time),
    )
    qlen = options["query_max_length"]
    rows = fetch_all(conn, query, {
        "length": qlen + 1 if qlen > 0 else 1_000_000, "all_databases": options["all_databases"],
        "min_calls": options["min_calls"], "marker": MARKER + "%", "top": options["top"],
    }, what="reading pg_stat_statements", module_params=params)
    statements = []
    for row in rows:
        touched = (row["shared_blks_hit"] or 0) + (row["shared_blks_read"] or 0)
        statements.append({
            "queryid": row["queryid"], "user": row["user"], "database": row["database"],
            "calls": row["calls"], "rows": row["rows"],
            "rows_per_call": round(row["rows"] / row["calls"], 2) if row["calls"] else None,
            "total_ms": round(row["total_exec_time"], 3), "mean_ms": round(row["mean_exec_time"], 3),
            "min_ms": round(row["min_exec_time"], 3), "max_ms": round(row["max_exec_time"], 3),
            "stddev_ms": round(row["stddev_exec_time"], 3),
            "percent_of_total_time": round(float(row["percent_of_total_time"]), 2) if row["percent_of_total_time"] is not None else None,
            "shared_blks_hit": row["shared_blks_hit"], "shared_blks_read": row["shared_blks_read"],
            "hit_ratio": round(row["shared_blks_hit"] / touched, 4) if touched else None,
            "temp_blks_written": row["temp_blks_written"],
            "io_read_ms": round(row["io_read_time"], 3), "io_write_ms": round(row["io_write_time"], 3),
            "query": truncate(row["query"], qlen),
        })
    return statements


def stats_info(conn, status: dict[str, Any], params: dict | None = None) -> dict[str, Any]:
    """When pg_stat_statements was last reset and how many entries it had to evict (1.9+)."""
    exists = fetch_all(conn, MARKER + " SELECT to_regclass(%s) IS NOT NULL AS present",
                       (f"{status['schema']}.pg_stat_statements_info",), module_params=params)
    if not exists[0]["present"]:
        return {}
    rows = fetch_all(conn, sql.SQL(MARKER + " SELECT dealloc, stats_reset::text AS stats_reset FROM {}.pg_stat_statements_info").format(
        sql.Identifier(status["schema"])), what="reading pg_stat_statements_info", module_params=params)
    return dict(rows[0]) if rows else {}


# -- what runs now, tables, indexes -------------------------------------------------------------

def running(conn, min_duration: float, options: dict[str, Any], params: dict | None = None) -> list[dict[str, Any]]:
    """Client statements active for longer than ``min_duration`` seconds right now, longest first."""
    qlen = options["query_max_length"]
    rows = fetch_all(conn, MARKER + """
        SELECT pid, usename AS user, application_name, host(client_addr) AS client_addr, datname AS database,
               wait_event_type, wait_event, EXTRACT(EPOCH FROM now() - query_start)::float8 AS duration_seconds,
               left(query, %(length)s) AS query
        FROM pg_stat_activity
        WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
          AND now() - query_start > make_interval(secs => %(min_duration)s)
        ORDER BY query_start
        LIMIT %(top)s""", {"length": qlen + 1 if qlen > 0 else 1_000_000, "min_duration": min_duration, "top": options["top"]},
                     what="reading pg_stat_activity", module_params=params)
    for row in rows:
        row["duration_seconds"] = round(row["duration_seconds"], 3)
        row["query"] = truncate(row["query"], qlen)
    return rows


def tables(conn, options: dict[str, Any], params: dict | None = None) -> list[dict[str, Any]]:
    """Tables of this database by rows read through sequential scans, with a missing-index flag.

    A table is a ``missing_index_suspect`` when it holds at least ``missing_index_min_rows`` live rows and
    is read by sequential scans more often than through indexes: the planner finds no index that helps.
    """
    rows = fetch_all(conn, MARKER + """
        SELECT schemaname AS schema, relname AS table, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch,
               n_live_tup, n_dead_tup, pg_relation_size(relid) AS size_bytes,
               (SELECT count(*) FROM pg_index AS i WHERE i.indrelid = relid) AS index_count,
               greatest(last_analyze, last_autoanalyze)::text AS last_analyzed
        FROM pg_stat_user_tables
        ORDER BY seq_tup_read DESC NULLS LAST, relname""", what="reading pg_stat_user_tables", module_params=params)
    result = []
    for row in rows:
        seq, idx = row["seq_scan"] or 0, row["idx_scan"] or 0
        row["seq_scan_ratio"] = round(seq / (seq + idx), 4) if seq + idx else None
        row["avg_rows_per_seq_scan"] = round(row["seq_tup_read"] / seq, 1) if seq else None
        row["missing_index_suspect"] = bool(row["n_live_tup"] >= options["missing_index_min_rows"] and seq > idx)
        result.append(row)
    suspects = [r for r in result if r["missing_index_suspect"]]
    others = [r for r in result if not r["missing_index_suspect"] and r["seq_scan"]]
    return suspects + others[: max(options["top"] - len(suspects), 0)]


def unused_indexes(conn, options: dict[str, Any], params: dict | None = None) -> list[dict[str, Any]]:
    """Indexes never scanned since statistics were reset, that enforce nothing (not unique, not a constraint)."""
    return fetch_all(conn, MARKER + """
        SELECT s.schemaname AS schema, s.relname AS table, s.indexrelname AS index, s.idx_scan,
               pg_relation_size(s.indexrelid) AS size_bytes, pg_get_indexdef(s.indexrelid) AS definition
        FROM pg_stat_user_indexes AS s
        JOIN pg_index AS i ON i.indexrelid = s.indexrelid
        WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = s.indexrelid)
        ORDER BY pg_relation_size(s.indexrelid) DESC, s.indexrelname
        LIMIT %(top)s""", {"top": options["top"]}, what="reading pg_stat_user_indexes", module_params=params)


# -- EXPLAIN ------------------------------------------------------------------------------------

_WRITE_WORDS = {"INSERT", "UPDATE", "DELETE", "MERGE", "INTO", "TRUNCATE", "COPY"}
# Functions with side effects that a READ ONLY transaction does not stop; refused under EXPLAIN ANALYZE
# (which executes the statement). A guard rail against mistakes, not a sandbox.
_ANALYZE_DENY = re.compile(
    r"^(PG_TERMINATE_BACKEND|PG_CANCEL_BACKEND|PG_RELOAD_CONF|PG_ROTATE_LOGFILE|PG_PROMOTE|PG_SWITCH_WAL|SET_CONFIG|"
    r"PG_NOTIFY|PG_ADVISORY_\w*|PG_TRY_ADVISORY_\w*|PG_STAT_RESET\w*|PG_STAT_STATEMENTS_RESET|PG_CREATE_\w+|PG_DROP_\w+|"
    r"PG_LOG_BACKEND_MEMORY_CONTEXTS|PG_FILE_\w+|LO_\w+|DBLINK\w*)$")


def _scan(text: str) -> tuple[list[tuple[str, str]], int]:
    """Tokens outside comments and quotes as (kind, value), and the statement separators seen.

    Kinds: ``word`` (upper-cased keyword or name), ``param`` ($n), ``semicolon``, ``open`` (a bracket).
    Knows -- and nested /* */ comments, '…' and E'…' strings, "…" identifiers and $tag$…$tag$ quotes.
    """
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise ExplainRefused("explain: unterminated /* comment")
        elif char == "'":
            escapes = i > 0 and text[i - 1] in "eE" and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            if escapes and tokens and tokens[-1] == ("word", "E"):
                tokens.pop()  # the E of E'…' is not a word
            i += 1
            while True:
                if i >= n:
                    raise ExplainRefused("explain: unterminated quoted string")
                if escapes and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "'":
                    if text.startswith("''", i):
                        i += 2
                        continue
                    i += 1
                    break
                i += 1
            tokens.append(("literal", ""))
        elif char == '"':
            end = i + 1
            while True:
                end = text.find('"', end)
                if end < 0:
                    raise ExplainRefused('explain: unterminated quoted identifier (")')
                if text.startswith('""', end):
                    end += 2
                    continue
                break
            tokens.append(("name", text[i + 1:end]))
            i = end + 1
        elif char == "$":
            param = re.match(r"\$(\d+)", text[i:])
            tag = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", text[i:])
            if param:
                tokens.append(("param", param.group(1)))
                i += len(param.group(0))
            elif tag:
                close = text.find(tag.group(0), i + len(tag.group(0)))
                if close < 0:
                    raise ExplainRefused(f"explain: unterminated dollar-quoted string {tag.group(0)}")
                tokens.append(("literal", ""))
                i = close + len(tag.group(0))
            else:
                i += 1
        elif char.isalpha() or char == "_":
            word = re.match(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*", text[i:]).group(0)
            tokens.append(("word", word.upper()))
            i += len(word)
        elif char == ";":
            tokens.append(("semicolon", ";"))
            i += 1
        elif char == "(":
            tokens.append(("open", "("))
            i += 1
        else:
            i += 1
    return tokens, sum(1 for kind, _v in tokens if kind == "semicolon")


def check_explainable(text: str, analyze: bool = False) -> tuple[str, int]:
    """Return (statement without a trailing semicolon, number of $n parameters), or raise ExplainRefused.

    Only one SELECT (or WITH … SELECT) is accepted: no other statement kind, no data-modifying CTE,
    no SELECT INTO, no second statement.
    """
    if not text or not text.strip():
        raise ExplainRefused("explain: the statement is empty")
    tokens, _count = _scan(text)
    while tokens and tokens[-1][0] == "semicolon":
        tokens.pop()
    if any(kind == "semicolon" for kind, _v in tokens):
        raise ExplainRefused("explain: only a single statement can be explained; this text contains several separated by ';'")
    words = [value for kind, value in tokens if kind == "word"]
    first = next(((kind, value) for kind, value in tokens if kind != "open"), None)
    if first is None or first[0] != "word" or first[1] not in ("SELECT", "WITH"):
        got = first[1] if first else "nothing"
        raise ExplainRefused(f"explain: only a SELECT statement can be explained, got {got}")
    writes = sorted(_WRITE_WORDS.intersection(words))
    if writes:
        raise ExplainRefused(f"explain: only a read-only SELECT can be explained; it contains {', '.join(writes)}")
    if analyze:
        risky = sorted({w for w in words if _ANALYZE_DENY.match(w)})
        if risky:
            raise ExplainRefused(f"explain_analyze: refusing to execute a statement that calls {', '.join(f.lower() for f in risky)}")
    params = [int(value) for kind, value in tokens if kind == "param"]
    statement = text.strip()
    while statement.endswith(";"):
        statement = statement[:-1].rstrip()
    return statement, max(params, default=0)


def _walk_plan(node: dict[str, Any], summary: dict[str, Any]) -> None:
    node_type = node.get("Node Type", "?")
    summary["node_types"][node_type] = summary["node_types"].get(node_type, 0) + 1
    if node_type in ("Seq Scan", "Parallel Seq Scan"):
        summary["seq_scans"].append({"relation": node.get("Relation Name"), "filter": node.get("Filter"),
                                     "plan_rows": node.get("Plan Rows"), "actual_rows": node.get("Actual Rows")})
    elif "Index Name" in node:
        summary["index_scans"].append({"relation": node.get("Relation Name"), "index": node.get("Index Name"), "node_type": node_type})
    for child in node.get("Plans", []) or []:
        _walk_plan(child, summary)


def summarise_plan(explained: list[dict[str, Any]]) -> dict[str, Any]:
    """The parts of EXPLAIN (FORMAT JSON) a person looks at first."""
    top = explained[0]
    plan = top["Plan"]
    summary: dict[str, Any] = {"total_cost": plan.get("Total Cost"), "plan_rows": plan.get("Plan Rows"),
                               "node_types": {}, "seq_scans": [], "index_scans": []}
    _walk_plan(plan, summary)
    if "Execution Time" in top:
        summary["execution_time_ms"] = top["Execution Time"]
        summary["planning_time_ms"] = top.get("Planning Time")
        summary["actual_rows"] = plan.get("Actual Rows")
    summary["plan"] = plan
    return summary


def explain(conn, statement: str, options: dict[str, Any], params: dict | None = None) -> dict[str, Any]:
    """EXPLAIN (FORMAT JSON) one SELECT inside a READ ONLY transaction that is always rolled back."""
    analyze = options["explain_analyze"]
    values = options.get("explain_params")
    text, param_count = check_explainable(statement, analyze=analyze)
    version = server_version_num(conn)
    result: dict[str, Any] = {"statement": text, "parameters": param_count, "analyze": analyze, "generic_plan": False}
    if values and len(values) != param_count:
        raise ValueError(f"explain_params: the statement has {param_count} parameter(s) ($1…), got {len(values)} value(s)")
    if param_count and not values:
        if version < 160000:
            result.update(explained=False, reason=(
                f"the statement has {param_count} parameter(s) ($1…) and PostgreSQL {version // 10000} cannot EXPLAIN it without "
                "values (EXPLAIN (GENERIC_PLAN) needs 16 or later); pass explain_params with one value per parameter"))
            return result
        if analyze:
            raise ValueError("explain_analyze: a statement with parameters can only be analyzed with explain_params")
        result["generic_plan"] = True
    explain_options = ["FORMAT JSON"]
    if analyze:
        explain_options = ["ANALYZE", "BUFFERS", "FORMAT JSON"]
    if result["generic_plan"]:
        explain_options.insert(0, "GENERIC_PLAN")
    option_sql = sql.SQL(", ".join(explain_options))  # fixed keywords only
    prepared = f"sre_explain_{secrets.token_hex(6)}"
    plan = None
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            if values:
                # PREPARE lets PostgreSQL infer each parameter's type; the values go in as quoted literals.
                conn.execute(sql.SQL("PREPARE {} AS ").format(sql.Identifier(prepared)) + sql.SQL(text))
                query = sql.SQL("EXPLAIN ({}) EXECUTE {} ({})").format(
                    option_sql, sql.Identifier(prepared), sql.SQL(", ").join(sql.Literal(str(v)) for v in values))
            else:
                query = sql.SQL("EXPLAIN ({}) ").format(option_sql) + sql.SQL(text)
            plan = conn.execute(query).fetchone()[0]
            raise psycopg.Rollback()
    except psycopg.Error as exc:
        if getattr(exc, "sqlstate", None) in ("57014", "55P03"):  # timed out: the option to change is query_timeout
            raise query_error(exc, "explaining the statement", params) from None
        raise PostgresError(f"explain: PostgreSQL could not explain the statement: {' '.join(str(exc).split())}",
                            option="explain", sqlstate=getattr(exc, "sqlstate", None)) from None
    finally:
        if values:
            try:
                conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(prepared)))
            except psycopg.Error:
                pass  # never prepared: the PREPARE itself failed
    result["explained"] = True
    result.update(summarise_plan(plan))
    result["index_candidates"] = index_candidates(conn, result["seq_scans"], options.get("missing_index_min_rows", 10000), params)
    return result


# A column compared with a constant or parameter in a scan filter: "(person_id = 8)", "(role = 'x'::text)", "(d >= $1)".
_FILTER_COLUMN = re.compile(r'(?<![\w."\s])"?([A-Za-z_][\w$]*)"?\s+(=|<=|>=|<|>|~~|~~\*|= ANY|IS NULL|IS NOT NULL)\s*')
_EQUALITY = ("=", "= ANY", "IS NULL", "IS NOT NULL")


def filter_columns(text: str | None) -> tuple[list[str], list[str]]:
    """Columns a scan filter compares: (equality, range), each in order of appearance, without repeats."""
    equality: list[str] = []
    ranged: list[str] = []
    for column, operator in _FILTER_COLUMN.findall(text or ""):
        target = equality if operator in _EQUALITY else ranged
        if column not in equality and column not in ranged:
            target.append(column)
    return equality, ranged


def index_candidates(conn, seq_scans: list[dict[str, Any]], min_rows: int, params: dict | None = None) -> list[dict[str, Any]]:
    """For each filtered sequential scan of a large table, the index that would serve it (equality columns first,
    then one range column), unless an index already leads with that column. Nothing is created here."""
    candidates = []
    seen = set()
    for scan in seq_scans:
        relation = scan.get("relation")
        equality, ranged = filter_columns(scan.get("filter"))
        if not relation or not (equality or ranged):
            continue
        rows = fetch_all(conn, MARKER + """
            SELECT n.nspname AS schema, c.relname AS table, c.reltuples::bigint AS rows,
                   array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
                   array(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                         WHERE i.indrelid = c.oid) AS leading
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = to_regclass(%s)""", (relation,), what="reading the explained table", module_params=params)
        if not rows:
            continue
        table = rows[0]
        columns = [c for c in equality if c in table["columns"]] + [c for c in ranged if c in table["columns"]][:1]
        if not columns or table["rows"] < min_rows:
            continue
        qualified = f"{table['schema']}.{table['table']}"
        key = (qualified, tuple(columns))
        if key in seen:
            continue
        seen.add(key)
        name = f"{table['table']}_{'_'.join(columns)}_idx"[:63]
        entry = {"table": qualified, "schema": table["schema"], "relation": table["table"], "columns": columns, "name": name,
                 "rows": table["rows"], "filter": scan.get("filter"),
                 "definition": f"CREATE INDEX CONCURRENTLY {name} ON {qualified} ({', '.join(columns)})"}
        if columns[0] in table["leading"]:
            entry["exists"] = True
            entry["note"] = (f"an index on {qualified} already leads with {columns[0]} and the planner chose a sequential scan: "
                             "check statistics (ANALYZE) and the filter's selectivity before adding another")
        else:
            entry["exists"] = False
        candidates.append(entry)
    return candidates


def statement_for_queryid(conn, status: dict[str, Any], queryid: int, params: dict | None = None) -> str:
    rows = fetch_all(conn, sql.SQL(MARKER + " SELECT query FROM {}.pg_stat_statements WHERE queryid = %s LIMIT 1").format(
        sql.Identifier(status["schema"])), (queryid,), what="looking up explain_queryid", module_params=params)
    if not rows:
        raise ValueError(f"explain_queryid: no statement with queryid {queryid} in pg_stat_statements")
    return rows[0]["query"]


# -- everything ---------------------------------------------------------------------------------

def findings(result: dict[str, Any], options: dict[str, Any]) -> list[str]:
    lines = []
    status = result["pg_stat_statements"]
    if not status["available"]:
        lines.append(f"pg_stat_statements unavailable: {status['reason']}; to enable: {status['how_to_enable']}")
    for statement in result.get("statements", [])[:3]:
        lines.append(f"queryid {statement['queryid']}: {statement['calls']} calls, mean {statement['mean_ms']:.1f} ms, "
                     f"max {statement['max_ms']:.1f} ms, {statement['percent_of_total_time'] or 0:.1f}% of total time: "
                     f"{truncate(' '.join((statement['query'] or '').split()), 120)}")
    if result.get("running"):
        lines.append(f"{len(result['running'])} statements running longer than {options['min_duration']:g}s right now")
    for table in result.get("tables", []):
        if table["missing_index_suspect"]:
            lines.append(f"{table['schema']}.{table['table']} ({table['n_live_tup']} rows): {table['seq_scan']} sequential scans vs "
                         f"{table['idx_scan'] or 0} index scans, {table['avg_rows_per_seq_scan']} rows read per scan: missing index?")
    if result.get("unused_indexes"):
        total = sum(i["size_bytes"] for i in result["unused_indexes"])
        lines.append(f"{len(result['unused_indexes'])} indexes never used since statistics were reset ({total} bytes)")
    plan = result.get("explain")
    if plan and plan.get("explained"):
        seq = [s["relation"] for s in plan["seq_scans"]]
        lines.append(f"explain: total cost {plan['total_cost']}, {plan['plan_rows']} rows estimated"
                     + (f", sequential scan of {', '.join(seq)}" if seq else ""))
        for candidate in plan.get("index_candidates", []):
            lines.append(candidate["note"] if candidate["exists"] else
                         f"missing index: {candidate['definition']} ({candidate['rows']} rows scanned sequentially for {candidate['filter']})")
    elif plan:
        lines.append(f"explain not possible: {plan['reason']}")
    return lines


def collect(conn, options: dict[str, Any], module_params: dict | None = None) -> dict[str, Any]:
    """Everything pg_slow_queries returns, for the sections in ``options['sections']``."""
    sections = options["sections"]
    status = stat_statements_status(conn, module_params)
    result: dict[str, Any] = {
        "server_version": conn.info.parameter_status("server_version"),
        "server_version_num": server_version_num(conn),
        "database": status["database"],
        "pg_stat_statements_available": status["available"],
        "pg_stat_statements": status,
    }
    if "statements" in sections and status["available"]:
        try:
            result["statements"] = top_statements(conn, status, options, module_params)
        except PostgresError as exc:
            if exc.sqlstate != "55000":  # "must be loaded via shared_preload_libraries"
                raise
            status.update(available=False, reason=str(exc), how_to_enable=HOW_TO_ENABLE.format(database=status["database"]))
            result["pg_stat_statements_available"] = False
        else:
            status.update(stats_info(conn, status, module_params))
            hidden = sum(1 for s in result["statements"] if s["query"] == "<insufficient privilege>")
            if hidden:
                result.setdefault("warnings", []).append(
                    f"{hidden} statements of other roles show <insufficient privilege>; connect as a superuser or a member of "
                    "pg_read_all_stats (pg_monitor) to see their text")
    if "running" in sections:
        result["running"] = running(conn, options["min_duration"], options, module_params)
    if "tables" in sections:
        result["tables"] = tables(conn, options, module_params)
        result["missing_index_suspects"] = [f"{t['schema']}.{t['table']}" for t in result["tables"] if t["missing_index_suspect"]]
    if "unused_indexes" in sections:
        result["unused_indexes"] = unused_indexes(conn, options, module_params)
    statement = options.get("explain")
    if options.get("explain_queryid") is not None:
        if not status["available"]:
            raise ValueError(f"explain_queryid: pg_stat_statements is not available ({status['reason']})")
        statement = statement_for_queryid(conn, status, options["explain_queryid"], module_params)
    if statement is not None:
        result["explain"] = explain(conn, statement, options, module_params)
    result.setdefault("warnings", [])
    result["findings"] = findings(result, options)
    return result
