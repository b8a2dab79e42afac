"""Data access. Canned, generated data for now; PostgreSQL replaces ``InMemoryRepository`` later.

The tables mirror the real schema (people, blocks, assignments). Every query goes
through ``ConnectionPool.connection()`` so pool usage, query durations and
database failures look like the real backend's.
"""

from __future__ import annotations

import hashlib
import random
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone

from . import metrics
from .errors import OperationalError, triggered

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


class ConnectionPool:
    """Stands in for SQLAlchemy's QueuePool: tracks checkouts and fails the way the real pool does."""

    def __init__(self, size: int = 10, overflow: int = 20, rng: random.Random | None = None):
        self.rng = rng or random.Random()
        metrics.DB_CONNECTIONS_MAX.set(size + overflow)

    @contextmanager
    def connection(self):
        if triggered("database"):
            raise OperationalError(self.rng.choice(_DB_FAILURES))
        metrics.DB_CONNECTIONS_ACTIVE.inc()
        try:
            yield
        finally:
            metrics.DB_CONNECTIONS_ACTIVE.dec()


class InMemoryRepository:
    """The schedule, generated deterministically from ``seed`` for four weeks from this Monday."""

    def __init__(self, seed: int = 0, start: date | None = None, pool: ConnectionPool | None = None):
        rng = random.Random(seed)
        self.pool = pool or ConnectionPool()
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

    def assignments(self, person_id: int | None = None, block_ids: set[int] | None = None) -> list[dict]:
        return self._query(lambda: [dict(a) for a in self._assignments
                                    if person_id in (None, a["person_id"]) and (block_ids is None or a["block_id"] in block_ids)])

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


def get_repository(seed: int = 0) -> InMemoryRepository:
    return InMemoryRepository(seed=seed)
