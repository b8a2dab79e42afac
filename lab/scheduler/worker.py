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
from datetime import date, timedelta
from pathlib import Path

from loguru import logger

from . import logs
from .errors import OperationalError
from .repository import ConnectionPool, monday_of

QUEUE = "celery"
WEEKLY_HOURS_QUERY = """
SELECT p.id, p.name, count(*) * 6 AS hours
FROM assignments a JOIN people p ON p.id = a.person_id JOIN blocks b ON b.id = a.block_id
WHERE p.type = 'resident' AND b.date >= %(start)s AND b.date < %(end)s
GROUP BY p.id, p.name ORDER BY hours DESC
"""
SUPERVISION_QUERY = """
SELECT count(DISTINCT b.id) AS unsupervised
FROM blocks b JOIN assignments a ON a.block_id = b.id JOIN people p ON p.id = a.person_id AND p.pgy_level = 1
WHERE b.date >= %(start)s AND b.date < %(end)s AND NOT EXISTS (
  SELECT 1 FROM assignments s JOIN people f ON f.id = s.person_id AND f.type = 'faculty'
  WHERE s.block_id = b.id AND s.role = 'supervising')
"""


class Worker:
    def __init__(self, host: str, pool: ConnectionPool, redis_client, interval: float):
        self.host, self.pool, self.redis, self.interval = host, pool, redis_client, interval
        self.stopping = False
        self.next_check = time.monotonic() + 10  # beat's first run: after the database is there

    def check_compliance(self) -> dict:
        start = monday_of(date.today())
        params = {"start": start, "end": start + timedelta(days=7)}
        with self.pool.connection() as conn:
            hours = conn.execute(WEEKLY_HOURS_QUERY, params).fetchall()
            unsupervised = conn.execute(SUPERVISION_QUERY, params).fetchone()["unsupervised"]
        over = [row["name"] for row in hours if row["hours"] > 80]
        return {"week": start.isoformat(), "residents": len(hours), "max_hours": max((r["hours"] for r in hours), default=0),
                "over_80h": over, "unsupervised_pgy1_blocks": unsupervised}

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
        except (OperationalError, KeyError) as exc:
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
    pool = ConnectionPool(url, int(os.environ.get("DB_POOL_SIZE", "2")), 0)
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
