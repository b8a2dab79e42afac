#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_terminate
short_description: Cancel or terminate PostgreSQL sessions chosen by filters, behind guard rails
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Cancels the running statement (C(pg_cancel_backend)) or ends the whole session (C(pg_terminate_backend)) of every client
    session matching all the given filters, the remediation step of the SlowDatabaseQueries and
    DatabaseConnectionPoolExhaustion runbooks.
  - "Guard rails: the module never touches its own session, WAL senders (replication), autovacuum, background workers or any
    other non-client process, nor superuser sessions unless O(allow_superuser=true). Protected sessions that matched are
    listed in RV(protected) with the reason."
  - O(max_targets) bounds the blast radius; by default the module fails without touching anybody when more sessions match.
  - Each signal re-checks in the same statement that the pid still belongs to the session that was selected (and, for a
    cancel, that it still runs the same statement), so a reused pid or a newer statement is never hit.
  - In check mode it lists exactly the sessions it would hit and signals nobody (the connection is read-only then).
    Unlike C(community.postgresql.postgresql_query), which would run C(pg_terminate_backend) even in check mode.
  - Idempotent in effect; a second run finds no matching session and reports C(changed=false).
extends_documentation_fragment:
  - sre.runbooks.postgres
options:
  action:
    description: V(cancel) stops the running statement and keeps the session; V(terminate) ends the session (rolls back its transaction).
    type: str
    choices: [cancel, terminate]
    default: cancel
  state:
    description: Only sessions in one of these states.
    type: list
    elements: str
    choices: [active, idle, idle in transaction, idle in transaction (aborted), fastpath function call, disabled]
  min_duration:
    description:
      - Only sessions in their current state for at least this long (C(now() - state_change)); for V(active) sessions that is
        how long the statement has been running. Seconds or a duration such as V(90s), V(5m).
    type: str
  min_idle_in_transaction:
    description: Only sessions idle inside an open transaction (aborted or not) for at least this long.
    type: str
  min_transaction_age:
    description: Only sessions whose transaction has been open for at least this long (C(now() - xact_start)).
    type: str
  user_filter:
    description: Only sessions of these roles.
    type: list
    elements: str
  application_name_filter:
    description: Only sessions with one of these C(application_name) values.
    type: list
    elements: str
  database_filter:
    description: Only sessions connected to one of these databases.
    type: list
    elements: str
  client_addr:
    description: Only sessions from these client addresses or CIDR networks; V(local) means the unix socket.
    type: list
    elements: str
  query_pattern:
    description:
      - Only sessions whose query text (the running one, or the last one for idle sessions) matches this PostgreSQL (POSIX)
        regular expression. Prefix it with V((?i\)) for a case-insensitive match.
    type: str
  pid:
    description: Only these process ids (for example the C(root_blockers) found by M(sre.runbooks.pg_activity)).
    type: list
    elements: int
  blocking_only:
    description: Only sessions that hold a lock another session is waiting for.
    type: bool
    default: false
  match_all:
    description:
      - Must be V(true) to run with no filter at all, which selects every client session the guard rails allow.
      - Without any filter and without this, the module fails.
    type: bool
    default: false
  allow_superuser:
    description: Also hit sessions of superuser roles. Connecting as a superuser is required to signal them.
    type: bool
    default: false
  max_targets:
    description: At most this many sessions are hit. What happens when more match is set by O(over_max_targets).
    type: int
    default: 10
  over_max_targets:
    description:
      - V(fail) touches nobody and fails, listing the candidates in RV(candidates).
      - V(longest_first) hits the O(max_targets) sessions that have been longest in their state and warns.
    type: str
    choices: [fail, longest_first]
    default: fail
  wait_timeout:
    description:
      - For O(action=terminate), seconds to wait for each session to be gone (C(pg_terminate_backend(pid, timeout\))); V(0) does not wait.
    type: float
    default: 5
  query_max_length:
    description: Query texts in the result are cut to this many characters (V(0) keeps them whole).
    type: int
    default: 200
notes:
  - Signalling another role's session needs a superuser, membership in C(pg_signal_backend) or in that role. Sessions the
    connecting role may not signal are protected (reported, never attempted), so the run never stops half way on a permission error.
  - Filters combine with AND; list filters match any of their values.
  - Filters are sent as query parameters, never interpolated into SQL.
  - Supports C(--diff); the before text lists the sessions hit, the after what happened to each.
seealso:
  - module: sre.runbooks.pg_activity
  - name: Server signaling functions
    description: pg_cancel_backend and pg_terminate_backend.
    link: https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-ADMIN-SIGNAL
"""

EXAMPLES = r"""
- name: Cancel statements of the scheduler running for more than five minutes (at most 5)
  sre.runbooks.pg_terminate:
    login_unix_socket: /var/run/postgresql
    database: residency_scheduler
    action: cancel
    state: [active]
    min_duration: 5m
    user_filter: [scheduler]
    max_targets: 5
  register: cancelled

- name: End sessions left idle in a transaction for ten minutes (the pool leak of the runbook)
  sre.runbooks.pg_terminate:
    host: db.example.org
    user: postgres
    password: "{{ vault_pg_password }}"
    action: terminate
    min_idle_in_transaction: 10m
    application_name_filter: [residency-scheduler-backend]
    max_targets: 20
    over_max_targets: longest_first

- name: Terminate the root blockers found by pg_activity
  sre.runbooks.pg_terminate:
    login_unix_socket: /var/run/postgresql
    action: terminate
    pid: "{{ pool.blocking.root_blockers | map(attribute='pid') | list }}"
    blocking_only: true

- name: Preview who a report-query cleanup would hit, touching nobody
  sre.runbooks.pg_terminate:
    login_unix_socket: /var/run/postgresql
    action: terminate
    query_pattern: '(?i)^select .* from rotation_report'
    client_addr: [10.20.0.0/16]
  check_mode: true
  register: preview
"""

RETURN = r"""
sessions:
  description:
    - The sessions hit (or, in check mode, that would be hit), longest in their state first. Each has C(pid), C(user),
      C(application_name), C(client_addr), C(database), C(state), C(backend_type), C(connected_at), C(duration_seconds) (time in
      its state), C(query_seconds), C(transaction_seconds), C(query) (cut to O(query_max_length)) and C(result).
    - C(result) is V(terminated) / V(cancelled), V(would be terminated) / V(would be cancelled) in check mode, V(gone before the signal),
      V(statement ended before the signal), or V(signal sent, still running after wait_timeout).
  returned: always
  type: list
  elements: dict
  sample: [{"pid": 4242, "user": "scheduler", "application_name": "reports", "client_addr": "10.20.1.5", "database": "residency_scheduler",
            "state": "active", "duration_seconds": 412.3, "query": "SELECT * FROM rotation_report(...", "result": "cancelled"}]
count:
  description: Number of sessions actually signalled (would be signalled in check mode).
  returned: always
  type: int
matched_count:
  description: Sessions that matched the filters and passed the guard rails, before O(max_targets).
  returned: always
  type: int
protected:
  description: Sessions that matched but were left alone, each with a C(reason) (own session, replication, autovacuum, superuser, ...).
  returned: always
  type: list
  elements: dict
candidates:
  description: With O(over_max_targets=fail), every session that matched when more than O(max_targets) did (the module failed).
  returned: on failure because of O(max_targets)
  type: list
  elements: dict
queries:
  description: The signalling statements run, for the audit trail.
  returned: always
  type: list
  elements: str
  sample: ["SELECT pg_terminate_backend(4242, 5000)"]
own_pid:
  description: Process id of the module's own session.
  returned: always
  type: int
action:
  description: The O(action) taken.
  returned: always
  type: str
limitations:
  description:
    - Sessions not reduced as expected, or targets dropped by O(over_max_targets=longest_first); each is also a warning of the task.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.sre.runbooks.plugins.module_utils._pg_terminate import STATES, TooManyTargets, build_filters, has_filter, run
from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError, PostgresModule, parse_seconds


def options_from_params(params: dict) -> dict:
    """Validated options; raises ValueError naming the option."""
    if params["max_targets"] < 1:
        raise ValueError(f"max_targets: must be at least 1, got {params['max_targets']}")
    if params["query_max_length"] < 0:
        raise ValueError(f"query_max_length: must not be negative, got {params['query_max_length']}")
    if params["wait_timeout"] < 0:
        raise ValueError(f"wait_timeout: must not be negative, got {params['wait_timeout']}")
    filters = build_filters(params, parse_seconds)
    if not has_filter(filters) and not params["match_all"]:
        raise ValueError("match_all: no filter given, which would select every client session; "
                         "set a filter (state, min_duration, user_filter, ...) or match_all=true")
    return {
        "action": params["action"],
        "filters": filters,
        "allow_superuser": params["allow_superuser"],
        "max_targets": params["max_targets"],
        "over_max_targets": params["over_max_targets"],
        "wait_timeout": params["wait_timeout"],
        "query_max_length": params["query_max_length"],
    }


def main() -> None:
    module = PostgresModule(
        argument_spec={
            "action": {"type": "str", "default": "cancel", "choices": ["cancel", "terminate"]},
            "state": {"type": "list", "elements": "str", "choices": STATES},
            "min_duration": {"type": "str"},
            "min_idle_in_transaction": {"type": "str"},
            "min_transaction_age": {"type": "str"},
            "user_filter": {"type": "list", "elements": "str"},
            "application_name_filter": {"type": "list", "elements": "str"},
            "database_filter": {"type": "list", "elements": "str"},
            "client_addr": {"type": "list", "elements": "str"},
            "query_pattern": {"type": "str"},
            "pid": {"type": "list", "elements": "int"},
            "blocking_only": {"type": "bool", "default": False},
            "match_all": {"type": "bool", "default": False},
            "allow_superuser": {"type": "bool", "default": False},
            "max_targets": {"type": "int", "default": 10},
            "over_max_targets": {"type": "str", "default": "fail", "choices": ["fail", "longest_first"]},
            "wait_timeout": {"type": "float", "default": 5},
            "query_max_length": {"type": "int", "default": 200},
        },
        supports_check_mode=True,
    )
    try:
        options = options_from_params(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    conn = module.connect(read_only=module.check_mode)
    try:
        result = run(conn, options, module.check_mode, module_params=module.params)
    except TooManyTargets as exc:
        module.fail_json(msg=str(exc), changed=False, **exc.result)
    except PostgresError as exc:
        module.fail_postgres(exc)
    finally:
        conn.close()
    if not module._diff:
        result.pop("diff")
    module.exit_with_limitations(result)


if __name__ == "__main__":
    main()
