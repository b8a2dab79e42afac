#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_activity
short_description: Connection pool usage, long-running and idle-in-transaction sessions, blocking chains and leak suspects
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Answers the DatabaseConnectionPoolExhaustion runbook steps with numbers from C(pg_stat_activity) and C(pg_settings),
    namely active connections against C(max_connections), long-running queries, connection pool settings and connection leaks.
  - Client connections are counted against C(max_connections); background processes (autovacuum, WAL senders, background
    workers) have their own slots and are reported separately in RV(backend_types).
  - The module's own session is left out of every count and list.
  - Read-only; never changes anything and runs fully in check mode.
  - When the pool is exhausted only a superuser can connect (through C(superuser_reserved_connections)); run the module as
    one then, for example as C(postgres) over O(login_unix_socket).
extends_documentation_fragment:
  - sre.runbooks.postgres
options:
  long_running_threshold:
    description: An active statement running longer than this is listed in RV(long_running). Seconds or a duration such as V(60s), V(5m).
    type: str
    default: 60s
  idle_in_transaction_threshold:
    description: A session idle inside an open transaction for longer than this is listed in RV(idle_in_transaction).
    type: str
    default: 30s
  query_max_length:
    description: Query texts are cut to this many characters (V(0) = whole text, as far as C(track_activity_query_size) keeps it).
    type: int
    default: 500
  limit:
    description: At most this many sessions in each of RV(long_running) and RV(idle_in_transaction); the C(_count) results give the totals.
    type: int
    default: 50
  sample_interval:
    description:
      - Seconds between samples for leak detection. V(0) takes a single sample and skips RV(leak_suspects).
      - With a positive value the module takes O(sample_count) samples this far apart; the runbook playbook uses about V(10).
    type: float
    default: 0
  sample_count:
    description: Number of samples taken when O(sample_interval) is positive.
    type: int
    default: 2
  leak_min_growth:
    description:
      - An application/user/client group is a leak suspect when its idle connections grew by at least this much between the
        first and the last sample and never went down in between.
    type: int
    default: 2
  filter_user:
    description: Only report sessions of these roles (usage totals always cover the whole server).
    type: list
    elements: str
  filter_application_name:
    description: Only report sessions with one of these C(application_name) values.
    type: list
    elements: str
  filter_database:
    description: Only report sessions connected to these databases.
    type: list
    elements: str
  filter_client_addr:
    description: Only report sessions from these client IP addresses.
    type: list
    elements: str
notes:
  - Sessions of other roles show C(<insufficient privilege>) instead of their query and state unless O(user) is a superuser or a
    member of C(pg_monitor) (or C(pg_read_all_stats)); RV(limitations) says when that happened.
  - Filters are sent as query parameters, never interpolated into SQL.
seealso:
  - module: sre.runbooks.pg_slow_queries
  - name: The Statistics Collector, pg_stat_activity
    description: Meaning of the states and wait events.
    link: https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-PG-STAT-ACTIVITY-VIEW
"""

EXAMPLES = r"""
- name: Pool usage, long-running and blocked sessions (as the postgres superuser over the local socket)
  become: true
  become_user: postgres
  sre.runbooks.pg_activity:
    login_unix_socket: /var/run/postgresql
    database: residency_scheduler
    long_running_threshold: 60s
  register: pool

- name: Two samples ten seconds apart to spot a connection leak
  sre.runbooks.pg_activity:
    host: db.example.org
    user: monitor
    password: "{{ vault_pg_monitor_password }}"
    sample_interval: 10
    leak_min_growth: 3
  register: pool_sampled

- name: Only the scheduler backend's sessions
  sre.runbooks.pg_activity:
    host: db.example.org
    filter_user: [scheduler]
    filter_application_name: [residency-scheduler-backend]
"""

RETURN = r"""
usage:
  description:
    - Client connections of the whole server (filters do not apply) against the limits. C(total) excludes the module's own session.
    - C(normal_slots) is C(max_connections) minus the reserved slots; C(available_for_normal_users) is what is left of it.
    - C(reserved_connections) is only returned by PostgreSQL 16 and later.
  returned: always
  type: dict
  sample: {"total": 97, "max_connections": 100, "superuser_reserved_connections": 3, "normal_slots": 97,
           "available_for_normal_users": 0, "usage_percent": 97.0, "normal_usage_percent": 100.0}
backend_types:
  description: Count of every server process by C(backend_type) (client backends, autovacuum, walsender, background workers).
  returned: always
  type: dict
  sample: {"client backend": 97, "autovacuum launcher": 1, "background writer": 1}
breakdown:
  description: Counts of the selected client sessions by C(state), C(user), C(application_name), C(client_addr) (V(local) for the unix socket) and C(database).
  returned: always
  type: dict
  sample: {"state": {"idle": 80, "active": 12, "idle in transaction": 5}, "user": {"scheduler": 97}}
long_running:
  description:
    - Active statements running longer than O(long_running_threshold), longest first, at most O(limit).
    - Each has C(pid), C(user), C(application_name), C(client_addr), C(database), C(state), C(wait_event_type), C(wait_event),
      C(duration_seconds), C(transaction_seconds) and C(query) (cut to O(query_max_length)).
  returned: always
  type: list
  elements: dict
long_running_count:
  description: Number of long-running statements before O(limit).
  returned: always
  type: int
idle_in_transaction:
  description:
    - Sessions idle in an open transaction longer than O(idle_in_transaction_threshold), oldest first, with C(idle_seconds) and C(transaction_seconds).
    - C(query) is the last statement they ran.
  returned: always
  type: list
  elements: dict
idle_in_transaction_count:
  description: Number of such sessions before O(limit).
  returned: always
  type: int
blocking:
  description:
    - Lock waits from C(pg_blocking_pids). C(blocked) lists waiting sessions with C(blocked_by) pids;
      C(root_blockers) the sessions that block others without waiting themselves (with C(blocks_directly) and C(blocked_total));
      C(chains) every path from a root blocker to a waiter as a list of pids; C(deadlock_cycle_pids) sessions waiting in a cycle.
  returned: always
  type: dict
  sample: {"blocked": [{"pid": 4242, "blocked_by": [4241]}], "root_blockers": [{"pid": 4241, "blocked_total": 2}],
           "chains": [[4241, 4242, 4243]], "deadlock_cycle_pids": []}
settings:
  description: The server settings that govern the pool, as C(SHOW) prints them.
  returned: always
  type: dict
  sample: {"max_connections": "100", "idle_in_transaction_session_timeout": "0", "statement_timeout": "0"}
leak_suspects:
  description:
    - Groups whose idle connections grew by at least O(leak_min_growth) and never shrank across the samples.
    - Each has C(application_name), C(user), C(client_addr), C(idle_counts) (one per sample) and C(growth).
  returned: when O(sample_interval) is positive
  type: list
  elements: dict
  sample: [{"application_name": "residency-scheduler-backend", "user": "scheduler", "client_addr": "10.0.0.7", "idle_counts": [12, 19], "growth": 7}]
samples:
  description: Per sample, its time and the server's client connection C(total) and C(idle) counts.
  returned: when O(sample_interval) is positive
  type: list
  elements: dict
selected_total:
  description: Client sessions matching the filters (all client sessions when no filter is set).
  returned: always
  type: int
filtered:
  description: Whether any filter option was set.
  returned: always
  type: bool
own_pid:
  description: Process id of the module's own session, excluded from everything.
  returned: always
  type: int
server_version:
  description: The server's version string.
  returned: always
  type: str
  sample: "15.18 (Debian 15.18-0+deb12u1)"
server_version_num:
  description: The server's version as a number.
  returned: always
  type: int
  sample: 150018
limitations:
  description: Limits of what could be seen (each also a warning of the task), such as sessions hidden by missing privileges.
  returned: always
  type: list
  elements: str
findings:
  description: One sentence per notable fact, for the incident report.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.sre.runbooks.plugins.module_utils._pg_activity import collect
from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError, PostgresModule, parse_seconds


def options_from_params(params: dict) -> dict:
    """Validated collector options; raises ValueError naming the option."""
    if params["query_max_length"] < 0:
        raise ValueError(f"query_max_length: must not be negative, got {params['query_max_length']}")
    if params["leak_min_growth"] < 1:
        raise ValueError(f"leak_min_growth: must be at least 1, got {params['leak_min_growth']}")
    if params["limit"] < 1:
        raise ValueError(f"limit: must be at least 1, got {params['limit']}")
    if params["sample_interval"] < 0:
        raise ValueError(f"sample_interval: must not be negative, got {params['sample_interval']}")
    if params["sample_count"] < 2:
        raise ValueError(f"sample_count: must be at least 2, got {params['sample_count']}")
    return {
        "long_running_threshold": parse_seconds(params["long_running_threshold"], "long_running_threshold"),
        "idle_in_transaction_threshold": parse_seconds(params["idle_in_transaction_threshold"], "idle_in_transaction_threshold"),
        "query_max_length": params["query_max_length"],
        "limit": params["limit"],
        "sample_interval": params["sample_interval"],
        "sample_count": params["sample_count"],
        "leak_min_growth": params["leak_min_growth"],
        "filters": {
            "users": params["filter_user"],
            "applications": params["filter_application_name"],
            "databases": params["filter_database"],
            "clients": params["filter_client_addr"],
        },
    }


def main() -> None:
    module = PostgresModule(
        argument_spec={
            "long_running_threshold": {"type": "str", "default": "60s"},
            "idle_in_transaction_threshold": {"type": "str", "default": "30s"},
            "query_max_length": {"type": "int", "default": 500},
            "limit": {"type": "int", "default": 50},
            "sample_interval": {"type": "float", "default": 0},
            "sample_count": {"type": "int", "default": 2},
            "leak_min_growth": {"type": "int", "default": 2},
            "filter_user": {"type": "list", "elements": "str"},
            "filter_application_name": {"type": "list", "elements": "str"},
            "filter_database": {"type": "list", "elements": "str"},
            "filter_client_addr": {"type": "list", "elements": "str"},
        },
        supports_check_mode=True,
    )
    try:
        options = options_from_params(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    conn = module.connect()
    try:
        result = collect(conn, options, module_params=module.params)
    except PostgresError as exc:
        module.fail_postgres(exc)
    finally:
        conn.close()
    module.exit_with_limitations({"changed": False, **result})


if __name__ == "__main__":
    main()
