# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Account remediations in the application's own PostgreSQL schema: lock / unlock, force a password
reset, revoke sessions, require MFA.

Everything happens in one transaction with the accounts' rows locked (``FOR UPDATE``): either every
account gets every change (plus its audit rows) or nothing changes. Table and column names come from
options and are always quoted with ``psycopg.sql.Identifier``; values are parameters.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError, query_error

DEFAULT_COLUMNS = {
    "id": "id",
    "username": "username",
    "locked": "is_locked",
    "locked_at": "locked_at",
    "failed_attempts": "failed_login_attempts",
    "mfa": "mfa_enabled",
    "password_hash": "hashed_password",
    "password_reset": None,
    "role": "role",
}
DEFAULT_SESSIONS = {"table": "sessions", "user_id": "user_id", "revoked_at": "revoked_at", "expires_at": "expires_at"}
DEFAULT_AUDIT = {"table": "audit_log", "user_id": "user_id", "action": "action", "entity": "entity", "entity_id": "entity_id",
                 "details": "details"}
# A password hash prefixed with this no longer matches any password (as "!" in /etc/shadow): the user has to
# go through the reset flow. The original hash stays behind the marker, so nothing is lost.
RESET_MARKER = "!reset!"


class AccountError(Exception):
    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


def _sql():
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    return sql


def merged(defaults: dict[str, Any], given: dict[str, Any] | None, option: str) -> dict[str, Any]:
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise AccountError(f"{option}: unknown keys {', '.join(unknown)}; expected {', '.join(sorted(defaults))}", option=option)
    result = dict(defaults)
    result.update({k: v for k, v in (given or {}).items() if v is not None or k == "password_reset"})
    return result


def revokes(o: dict[str, Any]) -> bool:
    """Live sessions end when asked, or with a lock or a forced reset unless revoke_sessions=false."""
    if o["revoke_sessions"] is not None:
        return bool(o["revoke_sessions"])
    return o["lock"] is True or bool(o["force_password_reset"])


def _table(schema: str | None, name: str):
    sql = _sql()
    return sql.Identifier(schema, name) if schema else sql.Identifier(name)


def read_accounts(conn, o: dict[str, Any], for_update: bool) -> list[dict[str, Any]]:
    """The accounts named in ``o['accounts']`` with the columns the actions touch and their live session count."""
    sql = _sql()
    c, s = o["columns"], o["sessions"]
    fields = [sql.SQL("u.{} AS id").format(sql.Identifier(c["id"])), sql.SQL("u.{} AS match").format(sql.Identifier(o["match_column"]))]
    for key in ("username", "locked", "mfa", "password_hash", "role", "password_reset", "failed_attempts"):
        if c.get(key):
            fields.append(sql.SQL("u.{} AS {}").format(sql.Identifier(c[key]), sql.Identifier(key)))
    if revokes(o):
        live = sql.SQL("(SELECT count(*) FROM {} x WHERE x.{} = u.{} AND x.{} IS NULL AND x.{} > now()) AS live_sessions").format(
            _table(o["schema"], s["table"]), sql.Identifier(s["user_id"]), sql.Identifier(c["id"]), sql.Identifier(s["revoked_at"]),
            sql.Identifier(s["expires_at"]))
        fields.append(live)
    query = sql.SQL("SELECT {} FROM {} u WHERE u.{}::text = ANY(%s) ORDER BY u.{}{}").format(
        sql.SQL(", ").join(fields), _table(o["schema"], o["users_table"]), sql.Identifier(o["match_column"]), sql.Identifier(c["id"]),
        sql.SQL(" FOR UPDATE OF u") if for_update else sql.SQL(""))
    from psycopg.rows import dict_row  # pylint: disable=import-outside-toplevel
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, (o["accounts"],))
        return list(cur.fetchall())


def plan(rows: list[dict[str, Any]], o: dict[str, Any]) -> list[dict[str, Any]]:
    """Per account, the changes needed (empty when it is already in the asked state)."""
    plans = []
    for row in rows:
        changes: dict[str, tuple[Any, Any]] = {}
        if o["lock"] is True and not row["locked"]:
            changes["locked"] = (False, True)
        if o["lock"] is False and row["locked"]:
            changes["locked"] = (True, False)
        if o["require_mfa"] and not row["mfa"]:
            changes["mfa"] = (False, True)
        if o["force_password_reset"]:
            if o["columns"].get("password_reset"):
                if not row["password_reset"]:
                    changes["password_reset"] = (False, True)
            elif not str(row["password_hash"]).startswith(RESET_MARKER):
                changes["password_hash"] = ("(usable)", "(expired: reset required)")
        if revokes(o) and row.get("live_sessions"):
            changes["live_sessions"] = (row["live_sessions"], 0)
        plans.append({"account": str(row["match"]), "id": row["id"], "username": row.get("username"), "role": row.get("role"),
                      "changes": changes})
    return plans


def apply(conn, plans: list[dict[str, Any]], o: dict[str, Any]) -> list[str]:
    """Make the planned changes (inside the caller's transaction); returns the statements, values left out."""
    sql = _sql()
    c, s, a = o["columns"], o["sessions"], o["audit"]
    users = _table(o["schema"], o["users_table"])
    done = []
    for item in plans:
        ch = item["changes"]
        sets = []
        if "locked" in ch:
            locking = ch["locked"][1]
            sets.append(sql.SQL("{} = %s").format(sql.Identifier(c["locked"])))
            params = [locking]
            if c.get("locked_at"):
                sets.append(sql.SQL("{} = CASE WHEN %s THEN now() ELSE NULL END").format(sql.Identifier(c["locked_at"])))
                params.append(locking)
            if not locking and c.get("failed_attempts"):
                sets.append(sql.SQL("{} = 0").format(sql.Identifier(c["failed_attempts"])))
        else:
            params = []
        if "mfa" in ch:
            sets.append(sql.SQL("{} = true").format(sql.Identifier(c["mfa"])))
        if "password_reset" in ch:
            sets.append(sql.SQL("{} = true").format(sql.Identifier(c["password_reset"])))
        if "password_hash" in ch:
            sets.append(sql.SQL("{} = %s || {}").format(sql.Identifier(c["password_hash"]), sql.Identifier(c["password_hash"])))
            params.append(RESET_MARKER)
        if sets:
            statement = sql.SQL("UPDATE {} SET {} WHERE {} = %s").format(users, sql.SQL(", ").join(sets), sql.Identifier(c["id"]))
            conn.execute(statement, [*params, item["id"]])
            done.append(statement.as_string(conn))
        if "live_sessions" in ch:
            statement = sql.SQL("UPDATE {} SET {} = now() WHERE {} = %s AND {} IS NULL AND {} > now()").format(
                _table(o["schema"], s["table"]), sql.Identifier(s["revoked_at"]), sql.Identifier(s["user_id"]),
                sql.Identifier(s["revoked_at"]), sql.Identifier(s["expires_at"]))
            conn.execute(statement, [item["id"]])
            done.append(statement.as_string(conn))
        if ch and a.get("table"):
            statement = sql.SQL("INSERT INTO {} ({}, {}, {}, {}, {}) VALUES (%s, %s, %s, %s, %s::jsonb)").format(
                _table(o["schema"], a["table"]), *(sql.Identifier(a[k]) for k in ("user_id", "action", "entity", "entity_id", "details")))
            import json  # pylint: disable=import-outside-toplevel
            details = {"changes": {k: {"before": v[0], "after": v[1]} for k, v in ch.items()}, "reason": o["reason"], "by": "sre.runbooks.app_account"}
            conn.execute(statement, [item["id"], o["audit_action"], "user", str(item["id"]), json.dumps(details)])
    return done


def check_names(conn, o: dict[str, Any]) -> None:
    """schema, users_table and match_column name what exists (they are quoted identifiers, so anything else would only
    fail later with PostgreSQL's own message); the error names the option. An unqualified table follows search_path."""
    def one(query: str, args: list) -> Any:
        row = conn.execute(query, args).fetchone()
        return next(iter(row.values())) if isinstance(row, dict) else row[0]

    if o["schema"] and not one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", [o["schema"]]):
        raise AccountError(f"schema: no schema {o['schema']!r} in this database", option="schema")
    table = one("SELECT to_regclass(CASE WHEN %s::text IS NULL THEN quote_ident(%s) ELSE quote_ident(%s) || '.' || quote_ident(%s) END)::oid",
                [o["schema"], o["users_table"], o["schema"], o["users_table"]])
    if table is None:
        raise AccountError(f"users_table: no table {o['users_table']!r}" + (f" in schema {o['schema']!r}" if o["schema"] else " on the search_path"),
                           option="users_table")
    if not one("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = %s AND attnum > 0 AND NOT attisdropped)",
               [table, o["match_column"]]):
        raise AccountError(f"match_column: no column {o['match_column']!r} in {o['users_table']}", option="match_column")


def run(conn, o: dict[str, Any], check_mode: bool, params: dict | None = None) -> dict[str, Any]:
    import psycopg  # pylint: disable=import-outside-toplevel
    try:
        check_names(conn, o)
        with conn.transaction():
            rows = read_accounts(conn, o, for_update=not check_mode)
            found = {str(r["match"]) for r in rows}
            missing = [a for a in o["accounts"] if a not in found]
            if missing and o["missing"] == "fail":
                raise AccountError(f"accounts: not found in {o['users_table']}.{o['match_column']}: {', '.join(missing)}; nothing was changed",
                                   option="accounts")
            plans = plan(rows, o)
            protected = [p["account"] for p in plans if p["role"] in o["protected_roles"] and p["changes"]]
            if protected and not o["allow_protected"] and o["lock"] is not False:
                raise AccountError(f"allow_protected: {', '.join(protected)} have a protected role ({', '.join(o['protected_roles'])}); "
                                   "set allow_protected=true to act on them; nothing was changed", option="allow_protected")
            changing = [p for p in plans if p["changes"]]
            if len(changing) > o["max_accounts"]:
                raise AccountError(f"max_accounts: {len(changing)} accounts would change, more than max_accounts={o['max_accounts']}; "
                                   "nothing was changed", option="max_accounts")
            statements = [] if check_mode else apply(conn, changing, o)
    except psycopg.Error as exc:
        raise query_error(exc, "changing accounts", params) from None
    before = "".join(f"{p['account']}: " + ", ".join(f"{k}={v[0]}" for k, v in p["changes"].items()) + "\n" for p in changing)
    after = "".join(f"{p['account']}: " + ", ".join(f"{k}={v[1]}" for k, v in p["changes"].items()) + "\n" for p in changing)
    return {
        "changed": bool(changing),
        "accounts": [{"account": p["account"], "id": p["id"], "username": p["username"], "role": p["role"],
                      "changes": {k: {"before": v[0], "after": v[1]} for k, v in p["changes"].items()}}
                     for p in plans],
        "missing": missing,
        "queries": statements,
        "diff": {"before": before, "after": after},
        "msg": (f"{'would change' if check_mode else 'changed'} {len(changing)} account(s)" if changing
                else "every account already in the asked state"),
    }


__all__ = ["AccountError", "PostgresError", "run", "merged", "DEFAULT_COLUMNS", "DEFAULT_SESSIONS", "DEFAULT_AUDIT"]
