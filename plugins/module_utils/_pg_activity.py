# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection-pool diagnostics from ``pg_stat_activity``: usage, long-running and idle-in-transaction
sessions, blocking chains and connection-leak suspects (DatabaseConnectionPoolExhaustion)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable

from ansible_collections.sre.runbooks.plugins.module_utils._postgres import fetch_all, server_version_num, truncate

SETTINGS = [
    "max_connections", "superuser_reserved_connections", "reserved_connections",
    "idle_in_transaction_session_timeout", "statement_timeout", "idle_session_timeout",
    "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count",
]
IDLE_STATES = ("idle", "idle in transaction", "idle in transaction (aborted)")
IN_TRANSACTION_STATES = ("idle in transaction", "idle in transaction (aborted)")
CLIENT = "client backend"

# One round trip per sample. Filters are parameters (NULL = no filter); pg_blocking_pids is only
# called for sessions waiting on a lock, since each call briefly takes the lock manager's locks.
ACTIVITY_SQL = """
SELECT pid, usename AS "user", application_name, host(client_addr) AS client_addr, client_port,
       datname AS database, state, wait_event_type, wait_event,
       -- Roles without pg_read_all_stats see other roles' backend_type as NULL; a backend with a user and a
       -- database is a client session (background workers have neither), so the pool count stays right.
       COALESCE(backend_type, CASE WHEN usesysid IS NOT NULL AND datid IS NOT NULL THEN 'client backend'
                                   ELSE 'unknown (insufficient privilege)' END) AS backend_type,
       to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS backend_start,
       EXTRACT(EPOCH FROM now() - backend_start)::float8 AS connection_seconds,
       EXTRACT(EPOCH FROM now() - query_start)::float8 AS query_seconds,
       EXTRACT(EPOCH FROM now() - xact_start)::float8 AS transaction_seconds,
       EXTRACT(EPOCH FROM now() - state_change)::float8 AS state_seconds,
       left(query, %(query_max_length)s) AS query,
       CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END AS blocked_by,
       pid = pg_backend_pid() AS own,
       (%(users)s::text[] IS NULL OR usename = ANY(%(users)s::text[]))
         AND (%(applications)s::text[] IS NULL OR application_name = ANY(%(applications)s::text[]))
         AND (%(databases)s::text[] IS NULL OR datname = ANY(%(databases)s::text[]))
         AND (%(clients)s::text[] IS NULL OR host(client_addr) = ANY(%(clients)s::text[])) AS selected
FROM pg_stat_activity
"""

# reset_val, not setting: the module's own session changed statement_timeout; a new session gets reset_val.
SETTINGS_SQL = "SELECT name, reset_val AS setting, unit FROM pg_settings WHERE name = ANY(%s)"


def sample_activity(conn, filters: dict[str, list[str] | None], query_max_length: int, params: dict | None = None) -> list[dict[str, Any]]:
    """Every backend of the server, marked ``own`` and ``selected`` (matches the filters)."""
    # Own backend's query text is this statement: not worth sending back.
    args = {
        "query_max_length": query_max_length + 1 if query_max_length > 0 else 1_000_000,
        "users": filters.get("users") or None,
        "applications": filters.get("applications") or None,
        "databases": filters.get("databases") or None,
        "clients": filters.get("clients") or None,
    }
    return fetch_all(conn, ACTIVITY_SQL, args, what="reading pg_stat_activity", module_params=params)


def read_settings(conn, params: dict | None = None) -> dict[str, dict[str, Any]]:
    rows = fetch_all(conn, SETTINGS_SQL, (SETTINGS,), what="reading pg_settings", module_params=params)
    return {row["name"]: row for row in rows}


def _label(value: Any, empty: str) -> str:
    return str(value) if value not in (None, "") else empty


def _with_unit(row: dict[str, Any]) -> str:
    """``30000`` + ``ms`` → ``30000ms``; ``0`` stays ``0`` (disabled)."""
    if not row["unit"] or row["setting"] in ("0", "-1"):
        return row["setting"]
    return f"{row['setting']}{row['unit']}"


def usage(rows: list[dict[str, Any]], settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Client connections against ``max_connections`` (the module's own session not counted)."""
    max_connections = int(settings["max_connections"]["setting"])
    superuser_reserved = int(settings["superuser_reserved_connections"]["setting"])
    clients = [r for r in rows if r["backend_type"] == CLIENT and not r["own"]]
    result: dict[str, Any] = {
        "total": len(clients),
        "max_connections": max_connections,
        "superuser_reserved_connections": superuser_reserved,
    }
    reserved = 0
    if "reserved_connections" in settings:  # PostgreSQL 16+: slots for pg_use_reserved_connections members
        reserved = int(settings["reserved_connections"]["setting"])
        result["reserved_connections"] = reserved
    normal_slots = max_connections - superuser_reserved - reserved
    result["normal_slots"] = normal_slots
    result["available_for_normal_users"] = max(normal_slots - len(clients), 0)
    result["usage_percent"] = round(100.0 * len(clients) / max_connections, 1) if max_connections else None
    result["normal_usage_percent"] = round(100.0 * len(clients) / normal_slots, 1) if normal_slots > 0 else None
    return result


def breakdowns(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts of the selected client sessions by state, user, application, client address and database."""
    keys = {
        "state": ("state", "(unknown)"),
        "user": ("user", "(unknown)"),
        "application_name": ("application_name", "(none)"),
        "client_addr": ("client_addr", "local"),
        "database": ("database", "(none)"),
    }
    result: dict[str, dict[str, int]] = {}
    for name, (column, empty) in keys.items():
        counts = Counter(_label(r[column], empty) for r in rows)
        result[name] = dict(counts.most_common())
    return result


def _session(row: dict[str, Any], query_max_length: int, **extra: Any) -> dict[str, Any]:
    session = {
        "pid": row["pid"],
        "user": row["user"],
        "application_name": row["application_name"],
        "client_addr": row["client_addr"],
        "database": row["database"],
        "state": row["state"],
        "wait_event_type": row["wait_event_type"],
        "wait_event": row["wait_event"],
        "query": truncate(row["query"], query_max_length),
    }
    session.update(extra)
    return session


def _seconds(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def long_running(rows: list[dict[str, Any]], threshold: float, query_max_length: int) -> list[dict[str, Any]]:
    """Active client statements running longer than ``threshold`` seconds, longest first."""
    found = [r for r in rows if r["state"] == "active" and (r["query_seconds"] or 0) > threshold]
    found.sort(key=lambda r: r["query_seconds"], reverse=True)
    return [_session(r, query_max_length, duration_seconds=_seconds(r["query_seconds"]),
                     transaction_seconds=_seconds(r["transaction_seconds"])) for r in found]


def idle_in_transaction(rows: list[dict[str, Any]], threshold: float, query_max_length: int) -> list[dict[str, Any]]:
    """Sessions idle inside an open transaction for longer than ``threshold`` seconds, oldest first.

    ``query`` is the last statement the session ran before going idle: usually the clue to the code path
    that forgot to commit.
    """
    found = [r for r in rows if r["state"] in IN_TRANSACTION_STATES and (r["state_seconds"] or 0) > threshold]
    found.sort(key=lambda r: r["state_seconds"], reverse=True)
    return [_session(r, query_max_length, idle_seconds=_seconds(r["state_seconds"]),
                     transaction_seconds=_seconds(r["transaction_seconds"])) for r in found]


def blocking(rows: list[dict[str, Any]], query_max_length: int, max_chains: int = 50) -> dict[str, Any]:
    """Who blocks whom. ``root_blockers`` hold locks others wait for and wait for nobody themselves:
    ending their transaction releases the whole chain."""
    by_pid = {r["pid"]: r for r in rows}
    waits_for = {r["pid"]: sorted(set(r["blocked_by"] or [])) for r in rows if r["blocked_by"]}
    blocks: dict[int, list[int]] = {}
    for waiter, blockers in waits_for.items():
        for blocker in blockers:
            blocks.setdefault(blocker, []).append(waiter)
    roots = sorted(pid for pid in blocks if not waits_for.get(pid))

    def downstream(pid: int) -> set[int]:
        seen: set[int] = set()
        stack = list(blocks.get(pid, []))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(blocks.get(current, []))
        return seen

    chains: list[list[int]] = []

    def walk(path: list[int]) -> None:
        if len(chains) >= max_chains:
            return
        children = [c for c in sorted(blocks.get(path[-1], [])) if c not in path]
        if not children:
            chains.append(path)
            return
        for child in children:
            walk(path + [child])

    for root in roots:
        walk([root])

    def describe(pid: int, **extra: Any) -> dict[str, Any]:
        row = by_pid.get(pid)
        if row is None:  # e.g. a prepared transaction or a backend that just ended
            return {"pid": pid, **extra}
        return _session(row, query_max_length, transaction_seconds=_seconds(row["transaction_seconds"]),
                        state_seconds=_seconds(row["state_seconds"]), **extra)

    root_blockers = []
    for root in roots:
        affected = downstream(root)
        root_blockers.append(describe(root, blocks_directly=sorted(blocks[root]), blocked_total=len(affected)))
    root_blockers.sort(key=lambda b: b["blocked_total"], reverse=True)
    blocked = [describe(pid, blocked_by=blockers, waiting_seconds=_seconds(by_pid[pid]["query_seconds"]) if pid in by_pid else None)
               for pid, blockers in sorted(waits_for.items())]
    # Waiting in a cycle with no root is a deadlock in the making; PostgreSQL resolves it after deadlock_timeout.
    in_cycle = sorted(pid for pid in waits_for if pid in downstream(pid))
    return {"blocked": blocked, "root_blockers": root_blockers, "chains": chains, "deadlock_cycle_pids": in_cycle}


def leak_suspects(samples: list[list[dict[str, Any]]], min_growth: int) -> list[dict[str, Any]]:
    """Groups (application, user, client address) whose idle connection count grew by at least ``min_growth``
    over the samples and never went down between two of them: connections opened and never returned."""
    series: dict[tuple, list[int]] = {}
    for index, rows in enumerate(samples):
        counts = Counter((r["application_name"], r["user"], r["client_addr"]) for r in rows if r["state"] in IDLE_STATES)
        for key in set(series) | set(counts):
            series.setdefault(key, [0] * index).append(counts.get(key, 0))
    suspects = []
    for (application, user, client), counts in series.items():
        growth = counts[-1] - counts[0]
        monotonic = all(later >= earlier for earlier, later in zip(counts, counts[1:]))
        if growth >= min_growth and monotonic:
            suspects.append({"application_name": application, "user": user, "client_addr": client,
                             "idle_counts": counts, "growth": growth})
    suspects.sort(key=lambda s: s["growth"], reverse=True)
    return suspects


def findings(result: dict[str, Any], thresholds: dict[str, float]) -> list[str]:
    """One line per thing worth a person's attention, for the incident report."""
    lines = []
    use = result["usage"]
    lines.append(f"{use['total']} client connections of max_connections {use['max_connections']} ({use['usage_percent']}%), "
                 f"{use['available_for_normal_users']} left for non-superusers")
    if use["available_for_normal_users"] == 0:
        lines.append("the pool is exhausted: normal roles get 'too many clients'; only superusers can connect")
    if result["long_running"]:
        top = result["long_running"][0]
        lines.append(f"{len(result['long_running'])} statements active longer than {thresholds['long_running']:g}s "
                     f"(longest {top['duration_seconds']:.0f}s, pid {top['pid']}, {top['application_name'] or 'no application_name'})")
    if result["idle_in_transaction"]:
        timeout = result["settings"].get("idle_in_transaction_session_timeout", "?")
        lines.append(f"{len(result['idle_in_transaction'])} sessions idle in transaction longer than "
                     f"{thresholds['idle_in_transaction']:g}s (idle_in_transaction_session_timeout={timeout})")
    for root in result["blocking"]["root_blockers"]:
        lines.append(f"pid {root['pid']} ({root.get('application_name') or 'unknown'}, {root.get('state')}) blocks "
                     f"{root['blocked_total']} sessions")
    for suspect in result.get("leak_suspects", []):
        lines.append(f"possible connection leak: {suspect['application_name'] or 'no application_name'} as {suspect['user']} "
                     f"from {suspect['client_addr'] or 'local'}: idle connections {' -> '.join(map(str, suspect['idle_counts']))}")
    return lines


def collect(conn, options: dict[str, Any], sleep: Callable[[float], None] = time.sleep, module_params: dict | None = None) -> dict[str, Any]:
    """Everything pg_activity returns. ``options`` holds thresholds in seconds, filters, limits and sampling."""
    qlen = options["query_max_length"]
    filters = options["filters"]
    settings_rows = read_settings(conn, module_params)
    samples_taken = options["sample_count"] if options["sample_interval"] > 0 else 1
    samples: list[list[dict[str, Any]]] = []
    sample_summaries = []
    for index in range(samples_taken):
        if index:
            sleep(options["sample_interval"])
        rows = sample_activity(conn, filters, qlen, module_params)
        clients = [r for r in rows if r["backend_type"] == CLIENT and not r["own"]]
        selected = [r for r in clients if r["selected"]]
        samples.append(selected)
        sample_summaries.append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "total": len(clients),
                                 "idle": sum(1 for r in clients if r["state"] in IDLE_STATES)})
    all_rows = rows
    clients = [r for r in all_rows if r["backend_type"] == CLIENT and not r["own"]]
    selected = samples[-1]
    limit = options["limit"]

    result: dict[str, Any] = {
        "server_version": conn.info.parameter_status("server_version"),
        "server_version_num": server_version_num(conn),
        "own_pid": next((r["pid"] for r in all_rows if r["own"]), None),
        "usage": usage(all_rows, settings_rows),
        "backend_types": dict(Counter(r["backend_type"] for r in all_rows if not r["own"]).most_common()),
        "breakdown": breakdowns(selected),
        "settings": {name: _with_unit(row) for name, row in settings_rows.items()},
        "filtered": any(filters.values()),
        "selected_total": len(selected),
    }
    long = long_running(selected, options["long_running_threshold"], qlen)
    idle_tx = idle_in_transaction(selected, options["idle_in_transaction_threshold"], qlen)
    result["long_running_count"] = len(long)
    result["long_running"] = long[:limit]
    result["idle_in_transaction_count"] = len(idle_tx)
    result["idle_in_transaction"] = idle_tx[:limit]
    # Chains are computed over every client session so a filtered-out root blocker is still found;
    # only chains touching a selected session are reported.
    chain_info = blocking(clients, qlen)
    if result["filtered"]:
        wanted = {r["pid"] for r in selected}
        chain_info["chains"] = [c for c in chain_info["chains"] if wanted.intersection(c)]
        keep = {pid for chain in chain_info["chains"] for pid in chain}
        chain_info["root_blockers"] = [b for b in chain_info["root_blockers"] if b["pid"] in keep]
        chain_info["blocked"] = [b for b in chain_info["blocked"] if b["pid"] in keep]
    result["blocking"] = chain_info
    if len(samples) > 1:
        result["samples"] = sample_summaries
        result["leak_suspects"] = leak_suspects(samples, options["leak_min_growth"])
    hidden = sum(1 for r in clients if r["query"] == "<insufficient privilege>")
    result["warnings"] = []
    if hidden:
        result["warnings"].append(f"{hidden} sessions belong to other roles and are hidden from this user; "
                                  "connect as a superuser or a member of pg_monitor to see their state and queries")
    result["findings"] = findings(result, {"long_running": options["long_running_threshold"],
                                           "idle_in_transaction": options["idle_in_transaction_threshold"]})
    return result
