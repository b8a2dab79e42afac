"""Data access: PostgreSQL (the lab's db1) through a small connection pool, or generated data.

``PostgresRepository`` reads the real schema (people, blocks, assignments, users;
see db/schema.sql) when ``DATABASE_URL`` is set; ``InMemoryRepository`` serves
generated data with the same methods (for tests without a database). Every
query goes through a pool's ``connection()``, so pool usage, query durations
and database failures are the real backend's.
"""

from __future__ import annotations

import hashlib
import queue
import random
import threading
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone

from . import metrics
from .errors import OperationalError, triggered

try:  # the app hosts have it (requirements/lab.txt); the in-memory repository does not need it
    import psycopg
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover
    psycopg = None

# Messages of real SQLAlchemy/psycopg2 connection failures.
_DB_FAILURES = (
    '(psycopg2.OperationalError) connection to server at "residency-scheduler-db" (127.0.0.1), port 5432 failed: '
    "FATAL:  sorry, too many clients already\n\n(Background on this error at: https://sqlalche.me/e/20/e3q8)",
    "(psycopg2.OperationalError) server closed the connection unexpectedly\n\tThis probably means the server terminated "
    "abnormally\n\tbefore or while processing the request.\n\n(Background on this error at: https://sqlalche.me/e/20/e3q8)",
    "(psycopg2.OperationalError) QueuePool limit of size 10 overflow 20 reached, connection timed out, timeout 30.00\n\n"
    "(Background on this error at: https://sqlalche.me/e/20/3o7r)",
)

FIRST_NAMES = ("Avery", "Blake", "Casey", "Devon", "Emerson", "Finley", "Harper", "Jordan", "Kendall", "Logan", "Morgan", "Parker",
               "Quinn", "Riley", "Sawyer", "Taylor", "Rowan")
LAST_NAMES = ("Nguyen", "Patel", "Garcia", "Smith", "Okafor", "Kim", "Rossi", "Haddad", "Cohen", "Silva", "Novak", "Ito",
              "Mensah", "Larsen", "Duarte", "Fischer", "Moreau")
FACULTY_ROLES = ("program_director", "associate_program_director", "core_faculty", "core_faculty", "core_faculty")
ROTATIONS = {1: "Inpatient Medicine", 2: "ICU", 3: "Emergency", 4: "Clinic", 5: "Night Float", 6: "Elective"}
LAB_PASSWORD = "lab-password"  # every lab user's password: the lab is not a place for secrets


def password_hash(password: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000).hex()


class FakePool:
    """Stands in for a pool when there is no database: tracks checkouts, fails like the real pool."""

    def __init__(self, size: int = 10, overflow: int = 20, rng: random.Random | None = None):
        self.rng = rng or random.Random()
        metrics.DB_CONNECTIONS_MAX.set(size + overflow)

    @contextmanager
    def connection(self):
        if triggered("database"):
            raise OperationalError(self.rng.choice(_DB_FAILURES))
        metrics.DB_CONNECTIONS_ACTIVE.inc()
        try:
            yield None
        finally:
            metrics.DB_CONNECTIONS_ACTIVE.dec()


class InMemoryRepository:
    """The schedule, generated deterministically from ``seed`` for four weeks from this Monday."""

    def __init__(self, seed: int = 0, start: date | None = None, pool: ConnectionPool | None = None):
        rng = random.Random(seed)
        self.pool = pool or FakePool()
        today = start or date.today()
        self.start = today - timedelta(days=today.weekday())
        self._people = self._make_people(rng)
        self._blocks = self._make_blocks()
        self._assignments = self._make_assignments(rng)

    # -- queries (the interface a PostgreSQL repository keeps) --

    def people(self, person_type: str | None = None) -> list[dict]:
        return self._query(lambda: [dict(p) for p in self._people if person_type in (None, p["type"])])

    def blocks(self, start: date, days: int) -> list[dict]:
        end = start + timedelta(days=days)
        return self._query(lambda: [dict(b) for b in self._blocks if start <= b["date"] < end])

    def assignments(self, person_id: int | None = None, block_ids: set[int] | None = None, limit: int | None = None,
                    offset: int = 0) -> list[dict]:
        rows = self._query(lambda: [dict(a) for a in self._assignments
                                    if person_id in (None, a["person_id"]) and (block_ids is None or a["block_id"] in block_ids)])
        return rows[offset:None if limit is None else offset + limit]

    def ping(self) -> str:
        return "ok"

    def audit(self, since: datetime, limit: int = 50) -> list[dict]:
        return self._query(lambda: [])

    def user(self, email: str) -> dict | None:
        found = self._query(lambda: [dict(p) for p in self._people if p["email"] == email])
        return found[0] if found else None

    def _query(self, run):
        with self.pool.connection():
            started = time.perf_counter()
            try:
                return run()
            finally:
                metrics.DB_QUERY_DURATION.observe(time.perf_counter() - started)

    # -- generated data --

    @staticmethod
    def _make_people(rng: random.Random) -> list[dict]:
        names = [f"{first} {last}" for first, last in zip(FIRST_NAMES, rng.sample(LAST_NAMES, len(LAST_NAMES)))]
        people = []
        for index, name in enumerate(names):
            is_resident = index < 12
            salt = f"salt-{index}"
            people.append({
                "id": index + 1,
                "name": ("" if is_resident else "Dr. ") + name,
                "type": "resident" if is_resident else "faculty",
                "email": name.lower().replace(" ", ".") + "@residency.lab",
                "pgy_level": index % 3 + 1 if is_resident else None,
                "faculty_role": None if is_resident else FACULTY_ROLES[index - 12],
                "password_salt": salt,
                "password_hash": password_hash(LAB_PASSWORD, salt),
            })
        return people

    def _make_blocks(self) -> list[dict]:
        blocks = []
        for day in range(28):
            current = self.start + timedelta(days=day)
            for time_of_day in ("AM", "PM"):
                weekend = current.weekday() >= 5
                blocks.append({
                    "id": len(blocks) + 1, "date": current, "time_of_day": time_of_day, "block_number": 1,
                    "is_weekend": weekend, "is_holiday": False, "day_type": "weekend" if weekend else "weekday",
                    "actual_date": current,
                })
        return blocks

    def _make_assignments(self, rng: random.Random) -> list[dict]:
        residents = [p for p in self._people if p["type"] == "resident"]
        faculty = [p for p in self._people if p["type"] == "faculty"]
        created_at = datetime.combine(self.start - timedelta(days=14), datetime.min.time(), tzinfo=timezone.utc)
        assignments = []
        for block in self._blocks:
            staff = [(r, "primary") for r in rng.sample(residents, 1 if block["is_weekend"] else 3)]
            staff.append((rng.choice(faculty), "supervising"))
            for person, role in staff:
                assignments.append({
                    "id": len(assignments) + 1, "block_id": block["id"], "person_id": person["id"],
                    "rotation_template_id": rng.choice(list(ROTATIONS)), "role": role, "override_reason": None,
                    "override_acknowledged_at": None, "created_by": "scheduler", "created_at": created_at,
                })
        return assignments


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


class ConnectionPool:
    """A small psycopg connection pool shaped like SQLAlchemy's QueuePool (``size`` kept open,
    ``max_overflow`` more on demand, ``timeout`` to wait for one), with real gauges:
    ``db_connections_active`` is the connections checked out now, ``db_connections_max`` size + overflow.
    Connection failures and exhaustion raise ``sqlalchemy.exc.OperationalError`` like the real backend."""

    def __init__(self, url: str, size: int = 5, max_overflow: int = 5, timeout: float = 5.0, rng: random.Random | None = None):
        if psycopg is None:
            raise RuntimeError("psycopg is not installed: pip install -r requirements/lab.txt")
        if size < 1 or max_overflow < 0:
            raise ValueError(f"DB_POOL_SIZE must be at least 1 and DB_POOL_MAX_OVERFLOW at least 0, not {size} and {max_overflow}")
        self.url, self.size, self.max_overflow, self.timeout = url, size, max_overflow, timeout
        self.rng = rng or random.Random()
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._lock = threading.Lock()
        self._open = 0
        self._address = url.rsplit("@", 1)[-1].split("/", 1)[0]  # host:port, never the password
        metrics.DB_CONNECTIONS_MAX.set(size + max_overflow)
        metrics.DB_CONNECTIONS_ACTIVE.set(0)

    def _connect(self):
        try:
            # client-side binding, as SQLAlchemy over psycopg2 does in the real backend: the server (and so
            # pg_stat_activity, which the slow-query runbook explains from) sees the statement with its values
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=3,
                                   application_name="residency-scheduler-backend", cursor_factory=psycopg.ClientCursor)
        except psycopg.OperationalError as exc:
            host, _sep, port = self._address.partition(":")
            reason = str(exc).strip().splitlines()[0].split("failed: ", 1)[-1]
            raise OperationalError(f'(psycopg2.OperationalError) connection to server at "{host}", port {port} failed: {reason}\n\n'
                                   "(Background on this error at: https://sqlalche.me/e/20/e3q8)") from None

    def _checkout(self):
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._open < self.size + self.max_overflow
            if grow:
                self._open += 1
        if grow:
            try:
                return self._connect()
            except BaseException:
                with self._lock:
                    self._open -= 1
                raise
        try:
            return self._idle.get(timeout=self.timeout)
        except queue.Empty:
            raise OperationalError(f"(psycopg2.OperationalError) QueuePool limit of size {self.size} overflow {self.max_overflow} reached, "
                                   f"connection timed out, timeout {self.timeout:.2f}\n\n"
                                   "(Background on this error at: https://sqlalche.me/e/20/3o7r)") from None

    def _discard(self, conn) -> None:
        try:
            conn.close()
        finally:
            with self._lock:
                self._open -= 1

    @contextmanager
    def connection(self):
        if triggered("database"):
            raise OperationalError(self.rng.choice(_DB_FAILURES))
        conn = self._checkout()
        metrics.DB_CONNECTIONS_ACTIVE.inc()
        healthy = True
        try:
            yield conn
        except psycopg.OperationalError as exc:
            healthy = False
            raise OperationalError(f"(psycopg2.OperationalError) {str(exc).strip()}\n\n"
                                   "(Background on this error at: https://sqlalche.me/e/20/e3q8)") from None
        finally:
            metrics.DB_CONNECTIONS_ACTIVE.dec()
            if not healthy or conn.closed or self._idle.qsize() >= self.size:
                self._discard(conn)  # overflow connections close on return, as in QueuePool
            else:
                self._idle.put(conn)

    def close(self) -> None:
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return


_PERSON = "id, name, type, email, pgy_level, faculty_role"
_BLOCK = "id, date, time_of_day, block_number, is_weekend, is_holiday, day_type, actual_date"
_ASSIGNMENT = ("id, block_id, person_id, rotation_template_id, role, override_reason, override_acknowledged_at, created_by, created_at")


class PostgresRepository:
    """The schedule in PostgreSQL (db/schema.sql), behind the same methods as ``InMemoryRepository``."""

    def __init__(self, pool: ConnectionPool, start: date | None = None):
        self.pool = pool
        self.start = start or monday_of(date.today())  # the seed's first day

    def people(self, person_type: str | None = None) -> list[dict]:
        return self._query(f"SELECT {_PERSON} FROM people WHERE %(type)s::text IS NULL OR type = %(type)s ORDER BY id",
                           {"type": person_type})

    def blocks(self, start: date, days: int) -> list[dict]:
        return self._query(f"SELECT {_BLOCK} FROM blocks WHERE date >= %(start)s AND date < %(end)s ORDER BY date, time_of_day",
                           {"start": start, "end": start + timedelta(days=days)})

    def assignments(self, person_id: int | None = None, block_ids: set[int] | None = None, limit: int | None = None,
                    offset: int = 0) -> list[dict]:
        return self._query(f"SELECT {_ASSIGNMENT} FROM assignments "
                           "WHERE (%(person)s::integer IS NULL OR person_id = %(person)s) "
                           "AND (%(blocks)s::integer[] IS NULL OR block_id = ANY(%(blocks)s)) "
                           "ORDER BY block_id, id LIMIT %(limit)s OFFSET %(offset)s",
                           {"person": person_id, "blocks": sorted(block_ids) if block_ids is not None else None,
                            "limit": limit, "offset": offset})

    def audit(self, since: datetime, limit: int = 50) -> list[dict]:
        """The activity feed: audit events since ``since``, newest first (audit_log_occurred_at_idx serves it)."""
        return self._query("SELECT id, occurred_at, user_id, action, entity, entity_id FROM audit_log "
                           "WHERE occurred_at >= %(since)s ORDER BY occurred_at DESC LIMIT %(limit)s", {"since": since, "limit": limit})

    def user(self, email: str) -> dict | None:
        rows = self._query(f"SELECT p.{_PERSON.replace(', ', ', p.')}, u.password_salt, u.hashed_password AS password_hash, "
                           "u.is_active, u.is_locked FROM users u JOIN people p ON p.id = u.person_id WHERE u.email = %(email)s",
                           {"email": email})
        return rows[0] if rows else None

    def ping(self) -> str:
        """"ok" when a pooled connection answers, else the error (for /health)."""
        try:
            self._query("SELECT 1 AS ok", {})
        except OperationalError as exc:
            return str(exc).split("\n", 1)[0]
        return "ok"

    def _query(self, sql: str, params: dict) -> list[dict]:
        with self.pool.connection() as conn:
            started = time.perf_counter()
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                metrics.DB_QUERY_DURATION.observe(time.perf_counter() - started)


def get_repository(seed: int = 0, database_url: str = "", pool_size: int = 5, max_overflow: int = 5):
    """PostgreSQL when ``database_url`` is set, else generated data."""
    if database_url:
        return PostgresRepository(ConnectionPool(database_url, pool_size, max_overflow))
    return InMemoryRepository(seed=seed)
