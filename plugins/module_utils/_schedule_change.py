# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply schedule changes to the Residency Scheduler's assignments, all or nothing.

One transaction: lock the assignments named, apply each change, write an audit row per change,
re-check the ACGME rules on the changed schedule, and commit only when no future violation appeared
(check mode rolls everything back after the same work, so its answer is exact). A change whose
premise no longer holds (the assignment moved since the plan) fails the whole run: nothing is
applied on a schedule that is not the one the plan was made for.
"""

from __future__ import annotations

import json
from typing import Any

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import PostgresMapping, burden, check, load_postgres
from ansible_collections.sre.runbooks.plugins.module_utils._postgres import fetch_all

ACTIONS = ("reassign", "remove", "add", "override")
ROLES = ("primary", "supervising", "backup")
CHANGE_KEYS = frozenset(("action", "assignment_id", "from_person_id", "to_person_id", "person_id", "block_id", "role", "override_reason",
                         # informative keys acgme_coverage returns; accepted so its changes pass straight through
                         "kind", "start", "end", "reason", "needs_decision", "date", "time_of_day", "to_person_name", "person_name",
                         "supervises_shift_id"))


class ChangeError(ValueError):
    """A change that cannot be applied; the message names the change and the field."""


class _Rollback(Exception):
    """Raised inside the transaction to undo it (check mode, or a verification that failed)."""


def _int(change: dict[str, Any], index: int, field: str) -> int:
    value = change.get(field)
    if isinstance(value, bool) or value is None:
        raise ChangeError(f"changes[{index}].{field}: required for action {change.get('action')!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ChangeError(f"changes[{index}].{field}: expected an integer id, got {value!r}") from None


def validate(changes: Any, allow_uncovered: bool, reason: str) -> list[dict[str, Any]]:
    """Normalised changes; every error names ``changes[i].field``. Nothing is read or written before this passes."""
    if not isinstance(changes, list):
        raise ChangeError(f"changes: expected a list, got {type(changes).__name__}")
    result = []
    seen: dict[tuple, int] = {}
    for index, change in enumerate(changes):
        if not isinstance(change, dict):
            raise ChangeError(f"changes[{index}]: expected a mapping, got {change!r}")
        unknown = sorted(set(map(str, change)) - CHANGE_KEYS)
        if unknown:
            raise ChangeError(f"changes[{index}]: unknown field(s) {', '.join(unknown)}")
        action = change.get("action")
        if action not in ACTIONS:
            raise ChangeError(f"changes[{index}].action: expected one of {', '.join(ACTIONS)}, got {action!r}")
        item: dict[str, Any] = {"index": index, "action": action}
        if action == "reassign":
            item.update(assignment_id=_int(change, index, "assignment_id"), from_person_id=_int(change, index, "from_person_id"),
                        to_person_id=_int(change, index, "to_person_id"))
            if item["from_person_id"] == item["to_person_id"]:
                raise ChangeError(f"changes[{index}].to_person_id: the same person as from_person_id")
        elif action == "remove":
            item.update(assignment_id=_int(change, index, "assignment_id"), from_person_id=_int(change, index, "from_person_id"))
            if not allow_uncovered:
                raise ChangeError(f"changes[{index}]: remove takes assignment {item['assignment_id']} off the schedule with nobody covering it; "
                                  "set allow_uncovered=true once a person has decided that")
        elif action == "add":
            role = change.get("role") or "supervising"
            if role not in ROLES:
                raise ChangeError(f"changes[{index}].role: expected one of {', '.join(ROLES)}, got {role!r}")
            item.update(block_id=_int(change, index, "block_id"), person_id=_int(change, index, "person_id"), role=role)
        else:
            item.update(assignment_id=_int(change, index, "assignment_id"))
            text = change.get("override_reason") or reason
            if not isinstance(text, str) or not text.strip():
                raise ChangeError(f"changes[{index}].override_reason: a justification is required to log an override")
            item["override_reason"] = text.strip()
        key = (action, item.get("assignment_id"), item.get("block_id"), item.get("person_id"))
        if key in seen:
            raise ChangeError(f"changes[{index}]: same change as changes[{seen[key]}]")
        seen[key] = index
        result.append(item)
    return result


class Applier:
    # pylint: disable=too-many-instance-attributes
    def __init__(self, conn, db_schema: str, reason: str, incident_id: str | None, actor: str, module_params: dict | None = None):
        from psycopg import sql  # pylint: disable=import-outside-toplevel
        self.sql = sql
        self.conn = conn
        self.schema = db_schema
        self.reason = reason
        self.incident_id = incident_id
        self.actor = actor
        self.params = module_params
        self.table = sql.Identifier(db_schema, "assignments")

    def _rows(self, where: str, args: tuple) -> list[dict[str, Any]]:
        query = self.sql.SQL("SELECT id, block_id, person_id, role, override_reason, override_acknowledged_at FROM {} WHERE " + where
                             + " FOR UPDATE").format(self.table)
        return fetch_all(self.conn, query, args, what="locking the assignments to change", module_params=self.params)

    def _audit_table(self) -> bool:
        rows = fetch_all(self.conn, "SELECT to_regclass(%s) IS NOT NULL AS present", (f'"{self.schema}".audit_log',),
                         what="looking for the audit log", module_params=self.params)
        return bool(rows and rows[0]["present"])

    def apply(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        outcome = []
        for item in items:
            outcome.append(getattr(self, "_" + item["action"])(item))
        if any(o["changed"] for o in outcome) and self._audit_table():
            for entry in outcome:
                if entry["changed"]:
                    self._audit(entry)
        return outcome

    def _one(self, item: dict[str, Any]) -> dict[str, Any] | None:
        rows = self._rows("id = %s", (item["assignment_id"],))
        return _plain(rows[0]) if rows else None

    def _premise(self, item: dict[str, Any], row: dict[str, Any], allowed: tuple) -> None:
        if row["person_id"] not in allowed:
            raise ChangeError(f"changes[{item['index']}]: assignment {item['assignment_id']} belongs to person {row['person_id']} now, not "
                              f"{item['from_person_id']}; the schedule changed since the plan was made, so nothing was applied")

    def _reassign(self, item: dict[str, Any]) -> dict[str, Any]:
        row = self._one(item)
        if row is None:
            raise ChangeError(f"changes[{item['index']}].assignment_id: assignment {item['assignment_id']} does not exist")
        self._premise(item, row, (item["from_person_id"], item["to_person_id"]))
        if row["person_id"] == item["to_person_id"]:
            return _entry(item, row, row, False)
        if self._rows("block_id = %s AND person_id = %s", (row["block_id"], item["to_person_id"])):
            raise ChangeError(f"changes[{item['index']}].to_person_id: person {item['to_person_id']} already has an assignment in block "
                              f"{row['block_id']}")
        self._execute("UPDATE {} SET person_id = %s, updated_at = now() WHERE id = %s", (item["to_person_id"], item["assignment_id"]))
        return _entry(item, row, dict(row, person_id=item["to_person_id"]), True)

    def _remove(self, item: dict[str, Any]) -> dict[str, Any]:
        row = self._one(item)
        if row is None:
            return _entry(item, None, None, False, note="already off the schedule")
        self._premise(item, row, (item["from_person_id"],))
        self._execute("DELETE FROM {} WHERE id = %s", (item["assignment_id"],))
        return _entry(item, row, None, True)

    def _add(self, item: dict[str, Any]) -> dict[str, Any]:
        existing = self._rows("block_id = %s AND person_id = %s", (item["block_id"], item["person_id"]))
        if existing:
            row = _plain(existing[0])
            return _entry(item, row, row, False, note=f"person already assigned to the block as {row['role']}")
        inserted = fetch_all(self.conn, self.sql.SQL("INSERT INTO {} (block_id, person_id, role, created_by) VALUES (%s, %s, %s, %s) "
                                                     "RETURNING id, block_id, person_id, role, override_reason, override_acknowledged_at")
                             .format(self.table), (item["block_id"], item["person_id"], item["role"], self.actor),
                             what=f"changes[{item['index']}]: adding the assignment", module_params=self.params)
        return _entry(dict(item, assignment_id=inserted[0]["id"]), None, _plain(inserted[0]), True)

    def _override(self, item: dict[str, Any]) -> dict[str, Any]:
        row = self._one(item)
        if row is None:
            raise ChangeError(f"changes[{item['index']}].assignment_id: assignment {item['assignment_id']} does not exist")
        if row["override_reason"] == item["override_reason"] and row["override_acknowledged_at"]:
            return _entry(item, row, row, False)
        after = fetch_all(self.conn, self.sql.SQL("UPDATE {} SET override_reason = %s, override_acknowledged_at = now(), updated_at = now() "
                                                  "WHERE id = %s RETURNING id, block_id, person_id, role, override_reason, "
                                                  "override_acknowledged_at").format(self.table),
                          (item["override_reason"], item["assignment_id"]), what=f"changes[{item['index']}]: logging the override",
                          module_params=self.params)
        return _entry(item, row, _plain(after[0]), True)

    def _execute(self, statement: str, args: tuple) -> None:
        fetch_all(self.conn, self.sql.SQL(statement).format(self.table), args, what="changing the schedule", module_params=self.params)

    def _audit(self, entry: dict[str, Any]) -> None:
        details = {"by": self.actor, "reason": self.reason, "incident_id": self.incident_id, "before": entry["before"], "after": entry["after"]}
        fetch_all(self.conn, self.sql.SQL("INSERT INTO {} (action, entity, entity_id, details) VALUES (%s, 'assignment', %s, %s::jsonb)")
                  .format(self.sql.Identifier(self.schema, "audit_log")),
                  (f"schedule_change.{entry['action']}", str(entry["assignment_id"]), json.dumps(details, default=str)),
                  what="writing the audit log", module_params=self.params)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def _entry(item: dict[str, Any], before: dict[str, Any] | None, after: dict[str, Any] | None, changed: bool, note: str | None = None) -> dict[str, Any]:
    entry = {"action": item["action"], "assignment_id": item.get("assignment_id"), "changed": changed, "before": before, "after": after}
    if note:
        entry["note"] = note
    return entry


def _future(conn, mapping: PostgresMapping, as_of: Any, rules: Any, params: dict | None) -> list[dict[str, Any]]:
    loaded = load_postgres(conn, mapping, module_params=params)
    report = check(loaded["shifts"], loaded["people"], as_of=as_of, timezone=mapping.tz.key, rules=rules)
    return [v for v in report["violations"] if v["status"] == "future"]


def _worse(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Future violations the change created or made worse (by rule and person)."""
    def tally(violations):
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for v in violations:
            groups.setdefault((v["rule"], str(v["person_id"])), []).append(v)
        return {key: burden(group) for key, group in groups.items()}
    old, new = tally(before), tally(after)
    worse = {key for key, (count, excess, span) in new.items()
             if key not in old or count > old[key][0] or excess > old[key][1] + 1e-6 or span > old[key][2] + 1e-6}
    return [v for v in after if (v["rule"], str(v["person_id"])) in worse]


def run(conn, items: list[dict[str, Any]], params: dict[str, Any], mapping: PostgresMapping | None, check_mode: bool,
        actor: str = "sre.runbooks.schedule_change") -> dict[str, Any]:
    """Apply ``items`` in one transaction; roll back in check mode or when verification finds a new violation."""
    import psycopg  # pylint: disable=import-outside-toplevel

    applier = Applier(conn, params["db_schema"], params["reason"], params.get("incident_id"), actor, params)
    result: dict[str, Any] = {}
    failure: ChangeError | None = None
    try:
        with conn.transaction():
            before = _future(conn, mapping, params["as_of"], params["rules"], params) if mapping else None
            outcome = applier.apply(items)
            result["results"] = outcome
            result["changed"] = any(o["changed"] for o in outcome)
            if mapping is not None:
                after = _future(conn, mapping, params["as_of"], params["rules"], params)
                worse = _worse(before, after)
                prevented = {(v["rule"], str(v["person_id"])) for v in before} - {(v["rule"], str(v["person_id"])) for v in after}
                result["verification"] = {"future_before": len(before), "future_after": len(after),
                                          "prevented": [{"rule": r, "person_id": p} for r, p in sorted(prevented)], "new_or_worse": worse}
                if worse and not params.get("allow_new_violations"):
                    failure = ChangeError(f"the changes would create or worsen {len(worse)} future ACGME violation(s) "
                                          f"({'; '.join(v['detail'] for v in worse[:3])}); nothing was applied")
                    raise _Rollback()
            if check_mode:
                raise _Rollback()
    except _Rollback:
        pass
    except psycopg.Error as exc:  # pragma: no cover - fetch_all turns these into PostgresError
        raise ChangeError(f"changing the schedule failed: {exc}") from None
    if failure is not None:
        failure.result = result  # type: ignore[attr-defined]
        raise failure
    return result
