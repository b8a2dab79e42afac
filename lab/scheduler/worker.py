"""Stand-in for ``residency-scheduler-celery-worker``: ``python -m scheduler.worker``.

Takes tasks from the Redis list ``celery`` (JSON ``{"task": NAME, "args": {...}}``), runs
the periodic ACGME compliance check every ``WORKER_CHECK_INTERVAL`` seconds (as beat
would schedule it) against PostgreSQL, and keeps ``celery:worker:<host>:heartbeat``
fresh in Redis. Logs like a Celery worker through Loguru (``LOG_FILE``, ``LOG_FORMAT``).
Settings: the backend's environment (``DATABASE_URL``, ``REDIS_URL``, ``SCHEDULER_HOST_ID``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from datetime import date
from pathlib import Path

from loguru import logger
from prometheus_client import Counter, Gauge, start_http_server

from . import logs
from .errors import OperationalError
from .repository import ConnectionPool, monday_of

QUEUE = "celery"


REPO = Path(__file__).resolve().parents[2]
ACGME_VIOLATIONS = Counter("acgme_violations_total", "ACGME violations found by the periodic compliance check (new ones).",
                           ["person_id", "rule"])
WORK_HOURS = Gauge("resident_work_hours_weekly", "A resident's scheduled hours in the current week.", ["person_id"])
VIOLATIONS_NOW = Gauge("acgme_check_violations", "Violations in the schedule at the last compliance check.")
# What postgres_exporter would export, for the database alerts (the lab has no exporter package).
PG_ACTIVITY = Gauge("pg_stat_activity_count", "Backends by state (pg_stat_activity).", ["datname", "state"])
PG_MAX_TX = Gauge("pg_stat_activity_max_tx_duration", "Longest running transaction (seconds), by state.", ["datname", "state"])
PG_MAX_CONNECTIONS = Gauge("pg_settings_max_connections", "PostgreSQL max_connections.")
PG_UP = Gauge("pg_up", "1 if the last PostgreSQL scrape worked.")
ACTIVITY_QUERY = """
SELECT coalesce(datname, '') AS datname, coalesce(state, 'unknown') AS state, count(*) AS count,
       coalesce(max(extract(epoch FROM now() - xact_start)), 0) AS max_tx
FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2
"""
STATES = ("active", "idle", "idle in transaction", "idle in transaction (aborted)")


def acgme_module():
    """The collection's own ACGME rules (plugins/module_utils/_acgme.py), so the worker and the
    acgme_compliance module judge the schedule the same way."""
    collections = REPO / ".collections"
    for path in (str(collections), str(REPO.parent.parent.parent)):
        if path not in sys.path:
            sys.path.insert(0, path)
    from ansible_collections.sre.runbooks.plugins.module_utils import _acgme  # pylint: disable=import-outside-toplevel
    return _acgme


class Worker:
    def __init__(self, host: str, pool: ConnectionPool, redis_client, interval: float):
        self.host, self.pool, self.redis, self.interval = host, pool, redis_client, interval
        self.stopping = False
        self.next_check = time.monotonic() + 5  # beat's first run: after the database is there
        self.seen: set = set()
        self.counting = False
        self.next_scrape = 0.0
        self.timezone = os.environ.get("ACGME_TIMEZONE", "UTC")

    def scrape_postgres(self) -> None:
        try:
            with self.pool.connection() as conn:
                rows = conn.execute(ACTIVITY_QUERY).fetchall()
                PG_MAX_CONNECTIONS.set(int(conn.execute("SHOW max_connections").fetchone()["max_connections"]))
        except OperationalError as exc:
            PG_UP.set(0)
            logger.warning("postgres scrape failed: {}", str(exc).splitlines()[0])
            return
        PG_UP.set(1)
        seen = set()
        for row in rows:
            seen.add((row["datname"], row["state"]))
            PG_ACTIVITY.labels(row["datname"], row["state"]).set(row["count"])
            PG_MAX_TX.labels(row["datname"], row["state"]).set(float(row["max_tx"]))
        for datname, state in {(d, s) for d, _s in seen for s in STATES} - seen:
            PG_ACTIVITY.labels(datname, state).set(0)
            PG_MAX_TX.labels(datname, state).set(0)

    def check_compliance(self) -> dict:
        """The whole schedule through the acgme_compliance rules (defaults: 6 h half-day blocks, UTC)."""
        acgme = acgme_module()
        start = monday_of(date.today())
        with self.pool.connection() as conn:
            data = acgme.load_postgres(conn, acgme.PostgresMapping(self.timezone))
        result = acgme.check(data["shifts"], data["people"], timezone=self.timezone)
        if not self.counting:
            # every (person, rule) series at 0 first: a counter born at 1 shows no increase() in Prometheus.
            # Violations are counted from the next check on, once Prometheus has scraped the zeros.
            for person in data["people"]:
                for rule in acgme.RULES:
                    ACGME_VIOLATIONS.labels(person_id=str(person["id"]), rule=rule)
            self.counting = True
            return {"week": start.isoformat(), "series": len(data["people"]) * len(acgme.RULES), "counting_from": "next check"}
        fresh = 0
        # a violation fixed and then made again (the same shift) is a new one: forget those no longer in the schedule
        self.seen &= {(v["rule"], str(v["person_id"]), v.get("start")) for v in result["violations"]}
        for violation in result["violations"]:
            key = (violation["rule"], str(violation["person_id"]), violation.get("start"))
            if key not in self.seen:
                self.seen.add(key)
                fresh += 1
                ACGME_VIOLATIONS.labels(person_id=str(violation["person_id"]), rule=violation["rule"]).inc()
                logger.warning("ACGME violation: rule={} person_id={} value={}", violation["rule"], violation["person_id"],
                               violation.get("value"))
        VIOLATIONS_NOW.set(len(result["violations"]))
        max_hours = 0.0
        for entry in result["hours"]:
            if entry.get("type") != "resident":
                continue
            week = next((w["hours"] for w in entry["weeks"] if w["start"] == start.isoformat()), 0.0)
            WORK_HOURS.labels(person_id=str(entry["person_id"])).set(week)
            max_hours = max(max_hours, week)
        return {"week": start.isoformat(), "residents": sum(1 for h in result["hours"] if h.get("type") == "resident"),
                "max_hours": max_hours, "violations": len(result["violations"]), "new_violations": fresh}

    def run_task(self, name: str, args: dict) -> None:
        started = time.perf_counter()
        task_id = args.get("id") or f"{int(time.time() * 1000):x}"
        logger.info("Task {}[{}] received", name, task_id)
        try:
            if name == "app.tasks.check_acgme_compliance":
                result = self.check_compliance()
            elif name == "app.tasks.ping":
                result = "pong"
            else:
                raise KeyError(f"Received unregistered task of type {name!r}")
        except (OperationalError, KeyError, ValueError) as exc:
            logger.opt(exception=exc).error("Task {}[{}] raised unexpected: {}: {}", name, task_id, type(exc).__name__, exc)
            return
        logger.info("Task {}[{}] succeeded in {:.3f}s: {}", name, task_id, time.perf_counter() - started, json.dumps(result))

    def loop(self) -> None:
        import redis  # pylint: disable=import-outside-toplevel

        logger.info("celery@{} ready.", self.host)
        while not self.stopping:
            try:
                self.redis.setex(f"celery:worker:{self.host}:heartbeat", 30, str(time.time()))
                item = self.redis.blpop([QUEUE], timeout=1)
            except redis.RedisError as exc:
                logger.warning("consumer: Cannot connect to redis: {}. Trying again in 2.00 seconds...", exc)
                time.sleep(2)
                item = None
            if item:
                try:
                    message = json.loads(item[1])
                    self.run_task(str(message["task"]), dict(message.get("args") or {}))
                except (ValueError, KeyError, TypeError) as exc:
                    logger.error("Received and deleted unknown message: {!r} ({})", item[1][:200], exc)
            if time.monotonic() >= self.next_check:
                self.next_check = time.monotonic() + self.interval
                self.run_task("app.tasks.check_acgme_compliance", {})
            if time.monotonic() >= self.next_scrape:
                self.next_scrape = time.monotonic() + 5
                self.scrape_postgres()
        logger.info("celery@{} warm shutdown (MainProcess)", self.host)


def main() -> int:
    import redis  # pylint: disable=import-outside-toplevel

    host = os.environ.get("SCHEDULER_HOST_ID") or socket.gethostname()
    logs.configure(Path(os.environ.get("LOG_FILE", "/var/log/app/celery-worker.log")), os.environ.get("LOG_FORMAT", "json").lower(),
                   os.environ.get("LOG_LEVEL", "INFO").upper(), host=host)
    url = os.environ.get("DATABASE_URL")
    if not url or not os.environ.get("REDIS_URL"):
        print("scheduler.worker: DATABASE_URL and REDIS_URL must be set", file=sys.stderr)
        return 2
    pool = ConnectionPool(url, 2, 0)
    port = int(os.environ.get("WORKER_METRICS_PORT", "0"))
    if port:
        start_http_server(port, addr=os.environ.get("WORKER_METRICS_BIND", "127.0.0.1"))
    worker = Worker(host, pool, redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2),
                    float(os.environ.get("WORKER_CHECK_INTERVAL", "60")))

    def stop(_signum, _frame):
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.loop()
    pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
