#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_account
short_description: Lock, unlock, force a password reset, revoke sessions or require MFA for application accounts in PostgreSQL
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - The account remediations of the FailedAuthenticationSpike and SuspiciousActivityDetected runbooks, done in the
    application's own tables (the Residency Scheduler's C(users) and C(sessions) by default; every table and column name is an option).
  - All accounts change in one transaction with their rows locked, audit rows included; a failure changes nothing.
  - Idempotent; an account already in the asked state is left alone (and gets no audit row).
  - "Guard rails: unknown accounts fail the run (O(missing)); accounts with a protected role (V(admin)) need O(allow_protected);
    O(max_accounts) bounds how many change."
extends_documentation_fragment:
  - sre.runbooks.postgres
options:
  accounts:
    description: The accounts, matched on O(match_column) (compared as text).
    type: list
    elements: str
    required: true
  match_column:
    description: Column the O(accounts) values are matched against, such as V(username), V(email) or V(id).
    type: str
    default: username
  lock:
    description: V(true) locks (and by default revokes live sessions), V(false) unlocks and clears the failed login counter. Unset leaves it.
    type: bool
  force_password_reset:
    description:
      - Make the current password unusable so the user has to reset it, and revoke live sessions (unless O(revoke_sessions=false)).
      - With a C(password_reset) column in O(columns) that boolean is set; otherwise the password hash is prefixed with C(!reset!)
        (like C(!) in C(/etc/shadow)), which no password matches and which keeps the old hash recoverable.
    type: bool
    default: false
  revoke_sessions:
    description: Revoke every live session (sets C(revoked_at)). Implied by O(lock=true) and O(force_password_reset) unless set to V(false).
    type: bool
  require_mfa:
    description: Set the account's MFA flag so the application requires MFA at the next login.
    type: bool
    default: false
  reason:
    description: Why, recorded in each audit row (for example the incident id and alert).
    type: str
    default: ""
  missing:
    description: V(fail) (nothing changes) or V(ignore) when an account does not exist; RV(missing) lists them.
    type: str
    choices: [fail, ignore]
    default: fail
  max_accounts:
    description: At most this many accounts may change in one run; more fails and changes nothing.
    type: int
    default: 20
  protected_roles:
    description: Accounts whose O(columns) C(role) value is one of these are only changed with O(allow_protected=true) (unlocking is always allowed).
    type: list
    elements: str
    default: [admin]
  allow_protected:
    description: Also act on accounts with a protected role.
    type: bool
    default: false
  schema:
    description: Schema of the tables (default the search path).
    type: str
  users_table:
    description: The accounts table.
    type: str
    default: users
  columns:
    description:
      - Column names in O(users_table), keys C(id), C(username), C(locked), C(locked_at), C(failed_attempts), C(mfa), C(password_hash),
        C(password_reset), C(role). Defaults are the Residency Scheduler's (C(is_locked), C(locked_at), C(failed_login_attempts),
        C(mfa_enabled), C(hashed_password), C(role)); C(password_reset) has none. Set a key to V(null) if the table has no such column.
    type: dict
  sessions:
    description: The sessions table, keys C(table), C(user_id), C(revoked_at), C(expires_at).
    type: dict
  audit:
    description:
      - The audit table, keys C(table), C(user_id), C(action), C(entity), C(entity_id), C(details) (jsonb); C(table=null) writes no audit rows.
    type: dict
  audit_action:
    description: The C(action) value of the audit rows; default names the actions, such as V(sre_account_lock+revoke_sessions).
    type: str
notes:
  - Supports check mode (reads without locking, changes nothing) and C(--diff) (per account, the changed fields before and after).
seealso:
  - module: sre.runbooks.ip_blocklist
"""

EXAMPLES = r"""
- name: Lock the targeted accounts and end their sessions (SuspiciousActivityDetected)
  sre.runbooks.app_account:
    login_unix_socket: /var/run/postgresql
    database: residency_scheduler
    accounts: [jdoe, asmith]
    lock: true
    reason: "INC-2026-1123 suspicious export"

- name: Force a password reset and require MFA for accounts hit by credential stuffing
  sre.runbooks.app_account:
    login_unix_socket: /var/run/postgresql
    database: residency_scheduler
    accounts: "{{ targeted_accounts }}"
    force_password_reset: true
    require_mfa: true
    missing: ignore
    max_accounts: 50

- name: Another schema layout
  sre.runbooks.app_account:
    host: db.example.org
    database: app
    accounts: [alice@example.org]
    match_column: email
    users_table: accounts
    columns: {locked: disabled, locked_at: null, failed_attempts: null, mfa: totp_required, password_reset: must_change_password}
    sessions: {table: user_sessions, user_id: account_id, revoked_at: ended_at, expires_at: expires}
    audit: {table: null}
    lock: true
"""

RETURN = r"""
accounts:
  description:
    - Every account found, with C(account), C(id), C(username) and C(role) (null without such a column) and C(changes) (field → C(before) / C(after));
      empty C(changes) means already in state.
  returned: always
  type: list
  elements: dict
  sample: [{"account": "jdoe", "id": 17, "username": "jdoe", "role": "resident",
            "changes": {"locked": {"before": false, "after": true}, "live_sessions": {"before": 2, "after": 0}}}]
missing:
  description: Accounts not found (only returned without failing when O(missing=ignore)).
  returned: always
  type: list
  elements: str
queries:
  description: The statements run (values are parameters and not shown).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.sre.runbooks.plugins.module_utils._app_account import (
    DEFAULT_AUDIT, DEFAULT_COLUMNS, DEFAULT_SESSIONS, AccountError, merged, run,
)
from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError, PostgresModule


def options_from_params(params: dict) -> dict:
    if not params["accounts"] or any(not a for a in params["accounts"]):
        raise AccountError("accounts: give at least one non-empty account", option="accounts")
    if params["max_accounts"] < 1:
        raise AccountError(f"max_accounts: must be at least 1, got {params['max_accounts']}", option="max_accounts")
    if params["lock"] is None and not params["force_password_reset"] and not params["revoke_sessions"] and not params["require_mfa"]:
        raise AccountError("lock: nothing to do; set lock, force_password_reset, revoke_sessions or require_mfa", option="lock")
    if params["lock"] is False and params["revoke_sessions"]:
        pass  # unlocking and ending sessions together is allowed
    columns = merged(DEFAULT_COLUMNS, params["columns"], "columns")
    for needed, flag in (("locked", params["lock"] is not None), ("mfa", params["require_mfa"]),
                         ("password_hash", params["force_password_reset"] and not columns.get("password_reset"))):
        if flag and not columns.get(needed):
            raise AccountError(f"columns: the action needs the {needed} column", option="columns")
    actions = [name for name, on in (("lock", params["lock"] is True), ("unlock", params["lock"] is False),
                                     ("password_reset", params["force_password_reset"]), ("revoke_sessions", params["revoke_sessions"]),
                                     ("require_mfa", params["require_mfa"])) if on]
    return {
        "accounts": list(dict.fromkeys(params["accounts"])),
        "match_column": params["match_column"],
        "lock": params["lock"],
        "force_password_reset": params["force_password_reset"],
        "revoke_sessions": params["revoke_sessions"],
        "require_mfa": params["require_mfa"],
        "reason": params["reason"],
        "missing": params["missing"],
        "max_accounts": params["max_accounts"],
        "protected_roles": params["protected_roles"],
        "allow_protected": params["allow_protected"],
        "schema": params["schema"],
        "users_table": params["users_table"],
        "columns": columns,
        "sessions": merged(DEFAULT_SESSIONS, params["sessions"], "sessions"),
        "audit": merged(DEFAULT_AUDIT, params["audit"], "audit") if params["audit"] is None or params["audit"].get("table", "x") else {"table": None},
        "audit_action": params["audit_action"] or "sre_account_" + "+".join(actions),
    }


def main() -> None:
    module = PostgresModule(
        argument_spec={
            "accounts": {"type": "list", "elements": "str", "required": True},
            "match_column": {"type": "str", "default": "username"},
            "lock": {"type": "bool"},
            "force_password_reset": {"type": "bool", "default": False, "no_log": False},
            "revoke_sessions": {"type": "bool"},
            "require_mfa": {"type": "bool", "default": False},
            "reason": {"type": "str", "default": ""},
            "missing": {"type": "str", "default": "fail", "choices": ["fail", "ignore"]},
            "max_accounts": {"type": "int", "default": 20},
            "protected_roles": {"type": "list", "elements": "str", "default": ["admin"]},
            "allow_protected": {"type": "bool", "default": False},
            "schema": {"type": "str"},
            "users_table": {"type": "str", "default": "users"},
            "columns": {"type": "dict"},
            "sessions": {"type": "dict"},
            "audit": {"type": "dict"},
            "audit_action": {"type": "str"},
        },
        supports_check_mode=True,
    )
    try:
        options = options_from_params(module.params)
    except AccountError as exc:
        module.fail_json(msg=str(exc), option=exc.option)
    conn = module.connect(read_only=module.check_mode)
    try:
        result = run(conn, options, module.check_mode, module.params)
    except AccountError as exc:
        module.fail_json(msg=str(exc), option=exc.option)
    except PostgresError as exc:
        module.fail_postgres(exc)
    finally:
        conn.close()
    if not module._diff:  # pylint: disable=protected-access
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
