# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cancel or terminate PostgreSQL backends chosen by filters, behind guard rails.

The selection is one read of ``pg_stat_activity`` with every filter sent as a parameter. Guard
rails are applied to what matched, and every protected session is reported with the reason:
the module's own backend, anything that is not a client backend (WAL senders, autovacuum,
background workers, ...), superuser sessions unless allowed, sessions the connecting role may
not signal. Each signal re-checks ``backend_start`` (and for a cancel ``query_start``) in the
same statement, so a pid reused by a new session, or a statement that finished and was replaced
by another, is never hit by mistake.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError, fetch_all, truncate

STATES = ["active", "idle", "idle in transaction", "idle in transaction (aborted)", "fastpath function call", "disabled"]
IN_TRANSACTION_STATES = ["idle in transaction", "idle in transaction (aborted)"]
CLIENT = "client backend"
FILTER_KEYS = ("states", "min_duration", "min_idle_in_transaction", "min_transaction_age", "users", "applications",
               "databases", "clients", "client_local", "query_pattern", "pids", "blocking_only")

SELECT_SQL = """
WITH me AS (SELECT r.rolsuper AS superuser, pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') AS signal_backend
            FROM pg_roles r WHERE r.rolname = current_user),
     blockers AS (SELECT DISTINCT unnest(pg_blocking_pids(w.pid)) AS pid FROM pg_stat_activity w WHERE w.wait_event_type = 'Lock')
SELECT a.pid, a.usename AS "user", a.application_name, host(a.client_addr) AS client_addr, a.datname AS database,
       a.state,
       -- Roles without pg_read_all_stats see other roles' backend_type as NULL; with a user and a database it is a client.
       COALESCE(a.backend_type, CASE WHEN a.usesysid IS NOT NULL AND a.datid IS NOT NULL THEN 'client backend' ELSE 'unknown' END)
         AS backend_type,
       a.backend_start, a.query_start,
       to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS connected_at,
       EXTRACT(EPOCH FROM now() - a.state_change)::float8 AS state_seconds,
       EXTRACT(EPOCH FROM now() - a.query_start)::float8 AS query_seconds,
       EXTRACT(EPOCH FROM now() - a.xact_start)::float8 AS transaction_seconds,
       left(a.query, %(query_max_length)s) AS query,
       a.pid = pg_backend_pid() AS own,
       COALESCE(r.rolsuper, false) AS superuser,
       (me.superuser OR (NOT COALESCE(r.rolsuper, false)
                         AND (me.signal_backend OR (a.usesysid IS NOT NULL AND pg_has_role(current_user, a.usesysid, 'MEMBER')))))
         AS can_signal,
       a.pid IN (SELECT pid FROM blockers) AS blocking
FROM pg_stat_activity a
CROSS JOIN me
LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE (%(states)s::text[] IS NULL OR a.state = ANY(%(states)s::text[]))
  AND (%(min_duration)s::float8 IS NULL OR EXTRACT(EPOCH FROM now() - a.state_change) >= %(min_duration)s::float8)
  AND (%(min_idle_in_transaction)s::float8 IS NULL
       OR (a.state IN ('idle in transaction', 'idle in transaction (aborted)')
           AND EXTRACT(EPOCH FROM now() - a.state_change) >= %(min_idle_in_transaction)s::float8))
  AND (%(min_transaction_age)s::float8 IS NULL OR EXTRACT(EPOCH FROM now() - a.xact_start) >= %(min_transaction_age)s::float8)
  AND (%(users)s::text[] IS NULL OR a.usename = ANY(%(users)s::text[]))
  AND (%(applications)s::text[] IS NULL OR a.application_name = ANY(%(applications)s::text[]))
  AND (%(databases)s::text[] IS NULL OR a.datname = ANY(%(databases)s::text[]))
  AND ((%(clients)s::inet[] IS NULL AND NOT %(client_local)s)
       OR a.client_addr <<= ANY(COALESCE(%(clients)s::inet[], '{}'))
       OR (%(client_local)s AND a.client_addr IS NULL AND a.client_port = -1))
  AND (%(query_pattern)s::text IS NULL OR a.query ~ %(query_pattern)s::text)
  AND (%(pids)s::int[] IS NULL OR a.pid = ANY(%(pids)s::int[]))
  AND (NOT %(blocking_only)s OR a.pid IN (SELECT pid FROM blockers))
ORDER BY EXTRACT(EPOCH FROM now() - a.state_change) DESC NULLS LAST, a.pid
"""

# The signal is sent only if the backend is still the one that was selected (same backend_start) and,
# for a cancel, still runs the same statement (same query_start). No row back: it was gone or changed.
SIGNAL_SQL = {
    "terminate": ("SELECT pg_terminate_backend(pid, %(wait_ms)s) AS ok FROM pg_stat_activity"
                  " WHERE pid = %(pid)s AND backend_start = %(backend_start)s AND backend_type = 'client backend'"),
    "cancel": ("SELECT pg_cancel_backend(pid) AS ok FROM pg_stat_activity"
               " WHERE pid = %(pid)s AND backend_start = %(backend_start)s AND query_start IS NOT DISTINCT FROM %(query_start)s"
               " AND backend_type = 'client backend'"),
}


def build_filters(params: dict[str, Any], parse_seconds) -> dict[str, Any]:
    """Module options → SQL filter parameters; raises ValueError naming the option."""
    states = params.get("state") or None
    for state in states or []:
        if state not in STATES:
            raise ValueError(f"state: unknown state {state!r}; expected one of {', '.join(STATES)}")
    clients: list[str] = []
    client_local = False
    for value in params.get("client_addr") or []:
        if value == "local":
            client_local = True
            continue
        try:
            clients.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise ValueError(f"client_addr: {value!r} is neither an IP address, a CIDR network nor 'local'") from None
    pids = params.get("pid") or None
    for pid in pids or []:
        if pid <= 0:
            raise ValueError(f"pid: process ids are positive, got {pid}")

    def seconds(option: str) -> float | None:
        value = params.get(option)
        return None if value in (None, "") else parse_seconds(value, option)

    pattern = params.get("query_pattern")
    if pattern == "":
        raise ValueError("query_pattern: must not be empty (leave it out to match every query)")
    return {
        "states": states,
        "min_duration": seconds("min_duration"),
        "min_idle_in_transaction": seconds("min_idle_in_transaction"),
        "min_transaction_age": seconds("min_transaction_age"),
        "users": params.get("user_filter") or None,
        "applications": params.get("application_name_filter") or None,
        "databases": params.get("database_filter") or None,
        "clients": clients or None,
        "client_local": client_local,
        "query_pattern": pattern,
        "pids": pids,
        "blocking_only": bool(params.get("blocking_only")),
    }


def has_filter(filters: dict[str, Any]) -> bool:
    return any(filters[key] not in (None, False, []) for key in FILTER_KEYS)


def select(conn, filters: dict[str, Any], query_max_length: int, module_params: dict | None = None) -> list[dict[str, Any]]:
    args = dict(filters)
    args["query_max_length"] = query_max_length + 1 if query_max_length > 0 else 1_000_000
    try:
        return fetch_all(conn, SELECT_SQL, args, what="selecting sessions from pg_stat_activity", module_params=module_params)
    except PostgresError as exc:
        if exc.sqlstate == "2201B":
            raise PostgresError(f"query_pattern: not a valid PostgreSQL regular expression: {exc}", option="query_pattern",
                                sqlstate=exc.sqlstate) from None
        raise


def protection(row: dict[str, Any], allow_superuser: bool) -> str | None:
    """Why a matching session must not be touched, or None."""
    if row["own"]:
        return "the module's own session"
    if row["backend_type"] != CLIENT:
        return f"not a client session ({row['backend_type']})"
    if row["superuser"] and not allow_superuser:
        return "superuser session (set allow_superuser to include it)"
    if not row["can_signal"]:
        return "the connecting role may not signal it (needs superuser, pg_signal_backend or membership in its role)"
    return None


def _seconds(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def describe(row: dict[str, Any], query_max_length: int, **extra: Any) -> dict[str, Any]:
    session = {
        "pid": row["pid"],
        "user": row["user"],
        "application_name": row["application_name"],
        "client_addr": row["client_addr"] if row["client_addr"] is not None else ("local" if row["backend_type"] == CLIENT else None),
        "database": row["database"],
        "state": row["state"],
        "backend_type": row["backend_type"],
        "connected_at": row["connected_at"],
        "duration_seconds": _seconds(row["state_seconds"]),
        "query_seconds": _seconds(row["query_seconds"]),
        "transaction_seconds": _seconds(row["transaction_seconds"]),
        "query": truncate(row["query"], query_max_length),
    }
    session.update(extra)
    return session


def _diff_line(session: dict[str, Any]) -> str:
    duration = session["duration_seconds"]
    return (f"pid {session['pid']} {session['user']}@{session['database']} app={session['application_name'] or '-'} "
            f"from={session['client_addr']} {session['state']} for {duration}s: {session['query'] or ''}")


def run(conn, options: dict[str, Any], check_mode: bool, module_params: dict | None = None) -> dict[str, Any]:
    """Select, guard, (unless check mode) signal; the module's whole result except ``changed`` handling."""
    action = options["action"]
    qlen = options["query_max_length"]
    rows = select(conn, options["filters"], qlen, module_params)
    own_pid = conn.info.backend_pid
    targets, protected = [], []
    for row in rows:
        reason = protection(row, options["allow_superuser"])
        if reason:
            protected.append(describe(row, qlen, reason=reason))
        else:
            targets.append(row)
    matched = len(targets)
    result: dict[str, Any] = {"action": action, "matched_count": matched, "protected": protected, "own_pid": own_pid,
                              "queries": [], "warnings": []}
    if matched > options["max_targets"]:
        if options["over_max_targets"] == "fail":
            result["candidates"] = [describe(r, qlen) for r in targets]
            raise TooManyTargets(
                f"max_targets: {matched} sessions match the filters, more than max_targets={options['max_targets']}; "
                "nothing was touched. Narrow the filters, raise max_targets, or set over_max_targets=longest_first", result)
        result["warnings"].append(f"{matched} sessions matched; only the {options['max_targets']} longest in their state were taken "
                                  "(over_max_targets=longest_first)")
        targets = targets[: options["max_targets"]]  # rows come longest-in-state first
    verb = "terminated" if action == "terminate" else "cancelled"
    wait_ms = int(options["wait_timeout"] * 1000)
    hits = []
    for row in targets:
        status = f"would be {verb}" if check_mode else None
        if not check_mode:
            statement = SIGNAL_SQL[action]
            args = {"pid": row["pid"], "backend_start": row["backend_start"], "query_start": row["query_start"], "wait_ms": wait_ms}
            signalled = fetch_all(conn, statement, args, what=f"signalling backend {row['pid']}", module_params=module_params)
            result["queries"].append(f"SELECT pg_{'terminate' if action == 'terminate' else 'cancel'}_backend({row['pid']}"
                                     + (f", {wait_ms})" if action == "terminate" else ")"))
            if not signalled:
                status = "gone before the signal" if action == "terminate" else "statement ended before the signal"
            elif signalled[0]["ok"]:
                status = verb
            else:
                status = "signal sent, still running after wait_timeout" if action == "terminate" else "signal not delivered"
                result["warnings"].append(f"pid {row['pid']}: {status}")
        hits.append(describe(row, qlen, result=status))
    done = [h for h in hits if h["result"] in (verb, f"would be {verb}")]
    result["sessions"] = hits
    result["count"] = len(done)
    result["changed"] = bool(done)
    result["diff"] = {
        "before": "".join(_diff_line(h) + "\n" for h in hits),
        "after": "".join(f"pid {h['pid']}: {verb if check_mode else h['result']}\n" for h in hits),
    }
    prefix = "would " if check_mode else ""
    word = action if check_mode else verb
    result["msg"] = (f"{prefix}{word} {len(done)} session(s); {len(protected)} protected" if hits
                     else f"no session to {action}; {len(protected)} matching session(s) protected")
    return result


class TooManyTargets(Exception):
    """More sessions match than ``max_targets`` allows; ``result`` lists them."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message)
        self.result = result
