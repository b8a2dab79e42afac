# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark sre.runbooks' pg_activity against the runbook's own check on a server with 500 connections.

Usage: .venv/bin/python benchmarks/pg_activity.py [--connections 500] [--repeat 20]

A throwaway PostgreSQL 15 (tests/integration/_postgres.py) gets max_connections raised above the
connection count; the benchmark holds that many application connections (80 % idle, 10 % idle in
transaction, 10 % running pg_sleep), then times, each ``--repeat`` times:

* ``psql -c 'SELECT count(*) FROM pg_stat_activity'``: the runbook's step, a process per run;
* pg_activity as Ansible runs it: a Python process executing the module with an args file;
* pg_activity's collector in-process: connect, one sample, disconnect (what the module costs beyond
  Python and Ansible start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
# tests.conftest puts the collection on sys.path.
import tests.conftest  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from tests.integration._postgres import PostgresServer  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.sre.runbooks.plugins.module_utils import _pg_activity, _postgres  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.sre.runbooks.plugins.modules.pg_activity import options_from_params  # noqa: E402  pylint: disable=wrong-import-position


EQUIVALENT_SQL = """
SELECT current_setting('max_connections'), current_setting('superuser_reserved_connections'), count(*)
  FROM pg_stat_activity WHERE backend_type = 'client backend';
SELECT state, usename, application_name, client_addr, count(*) FROM pg_stat_activity
 WHERE backend_type = 'client backend' GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC;
SELECT pid, usename, application_name, now() - query_start AS running, left(query, 500) FROM pg_stat_activity
 WHERE state = 'active' AND now() - query_start > interval '60 seconds' AND pid <> pg_backend_pid()
 ORDER BY running DESC LIMIT 50;
SELECT pid, usename, application_name, now() - state_change AS idle FROM pg_stat_activity
 WHERE state LIKE 'idle in transaction%' AND now() - state_change > interval '30 seconds' ORDER BY idle DESC LIMIT 50;
SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0;
"""


def hold_connections(server: PostgresServer, count: int) -> list:
    """Open ``count`` application connections: most idle, some idle in transaction, some busy."""
    held = []
    for index in range(count):
        kind = "busy" if index % 10 == 0 else "tx" if index % 10 == 1 else "idle"
        conn = server.connect(superuser=False, autocommit=kind != "tx", dbname=server.app_database,
                              application_name=f"bench-{kind}-{index % 7}")
        if kind == "tx":
            conn.execute("SELECT 1")
        elif kind == "busy":
            conn.pgconn.send_query(b"SELECT pg_sleep(600)")  # returns at once; the backend stays active
        held.append(conn)
    return held


def timed(func, repeat: int) -> list[float]:
    times = []
    for _unused in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return times


def summary(name: str, times: list[float]) -> dict:
    return {"name": name, "median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000,
            "max_ms": max(times) * 1000, "runs": len(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    print(f"starting PostgreSQL 15 with max_connections={args.connections + 30} ...", flush=True)
    with PostgresServer(max_connections=args.connections + 30) as server:
        started = time.perf_counter()
        held = hold_connections(server, args.connections)
        print(f"opened {len(held)} connections in {time.perf_counter() - started:.1f}s", flush=True)

        module_args = server.module_args()
        params = {name: spec.get("default") for name, spec in _postgres.postgres_argument_spec().items()}
        params.update(module_args)
        options = options_from_params({
            "long_running_threshold": "60s", "idle_in_transaction_threshold": "30s", "query_max_length": 500, "limit": 50,
            "sample_interval": 0, "sample_count": 2, "leak_min_growth": 2, "filter_user": None,
            "filter_application_name": None, "filter_database": None, "filter_client_addr": None,
        })
        last = {}

        def in_process():
            conn = _postgres.connect(params)
            try:
                last["result"] = _pg_activity.collect(conn, options)
            finally:
                conn.close()

        psql_argv = ["psql", "-X", "-At", "-c", "SELECT count(*) FROM pg_stat_activity"]
        # The same questions pg_activity answers, by hand in one psql call: usage vs the limits, the breakdown,
        # long-running and idle-in-transaction sessions and blocking chains (no leak sampling, no findings).
        psql_equivalent_argv = ["psql", "-X", "-At", "-c", EQUIVALENT_SQL]
        psql_env = server.psql_env()
        psql_out = subprocess.run(psql_argv, env=psql_env, check=True, capture_output=True, text=True).stdout.strip()

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": module_args}, handle)
            args_file = handle.name
        module_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / ".collections"))
        module_argv = [sys.executable, str(REPO_ROOT / "plugins/modules/pg_activity.py"), args_file]
        module_out = json.loads(subprocess.run(module_argv, env=module_env, check=True, capture_output=True, text=True).stdout)

        # Start-up alone: Python, ansible's module_utils and psycopg imported, nothing run.
        import_argv = [sys.executable, "-c", "import ansible_collections.sre.runbooks.plugins.modules.pg_activity"]
        results = [
            summary("psql -c 'SELECT count(*) FROM pg_stat_activity'",
                    timed(lambda: subprocess.run(psql_argv, env=psql_env, check=True, capture_output=True), args.repeat)),
            summary("psql, the same breakdown by hand (5 statements)",
                    timed(lambda: subprocess.run(psql_equivalent_argv, env=psql_env, check=True, capture_output=True), args.repeat)),
            summary("pg_activity module process (one sample)",
                    timed(lambda: subprocess.run(module_argv, env=module_env, check=True, capture_output=True), args.repeat)),
            summary("  of which start-up (python + ansible + psycopg imports)",
                    timed(lambda: subprocess.run(import_argv, env=module_env, check=True, capture_output=True), args.repeat)),
            summary("pg_activity collector in-process (connect + one sample)", timed(in_process, args.repeat)),
        ]
        for conn in held:
            conn.close()
        os.unlink(args_file)

    result = last["result"]
    print(f"\npsql says count(*) = {psql_out} (every backend, background processes and psql itself included)")
    print(f"pg_activity says usage.total = {module_out['usage']['total']} client connections of {module_out['usage']['max_connections']}, "
          f"states {result['breakdown']['state']}, "
          f"{len(json.dumps(module_out))} bytes of JSON")
    print(f"\n{'what':58} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for row in results:
        print(f"{row['name']:58} {row['median_ms']:10.1f} {row['min_ms']:8.1f} {row['max_ms']:8.1f}")
    base, equivalent = results[0]["median_ms"], results[1]["median_ms"]
    print(f"\nratio module process / psql count(*): {results[2]['median_ms'] / base:.2f}x; "
          f"module process / psql equivalent: {results[2]['median_ms'] / equivalent:.2f}x; "
          f"in-process collector / psql count(*): {results[4]['median_ms'] / base:.2f}x; "
          f"in-process collector / psql equivalent: {results[4]['median_ms'] / equivalent:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
