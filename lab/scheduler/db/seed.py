"""Create the schema and seed a realistic, ACGME-compliant 8-week schedule (deterministic).

    DATABASE_URL=postgresql://scheduler:...@127.0.0.1:15432/residency_scheduler \
        python -m scheduler.db.seed [--schema] [--start 2026-11-23] [--check-only]

20 residents (PGY-1: 7, PGY-2: 7, PGY-3: 6) and 8 faculty; 56 days of AM/PM half-day
blocks from ``--start`` (default: Monday of this week). Residents work their
rotation every weekday (two 6-hour blocks) and at most one weekend day a week
on the call team; every block a PGY-1 works has a supervising faculty member.
The generated schedule is checked against the ACGME rules before it is written
(80 h/week averaged over four weeks, one day in seven free, PGY-1 supervision);
prints a JSON summary. Every lab user's password is ``lab-password``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg

SCHEMA = Path(__file__).with_name("schema.sql")
DAYS = 56
BLOCK_HOURS = 6  # a half-day block
LAB_PASSWORD = "lab-password"  # nosec: the lab's published demo password

RESIDENT_NAMES = (
    "Avery Mensah", "Blake Nguyen", "Casey Patel", "Devon Garcia", "Emerson Smith", "Finley Okafor", "Harper Kim",
    "Jordan Rossi", "Kendall Haddad", "Logan Cohen", "Morgan Silva", "Parker Novak", "Quinn Ito", "Riley Larsen",
    "Sawyer Duarte", "Taylor Fischer", "Rowan Moreau", "Skyler Brandt", "Reese Achebe", "Hayden Quispe",
)
FACULTY = (
    ("Elena Marquez", "program_director"), ("Samuel Whitaker", "associate_program_director"),
    ("Priya Raman", "core_faculty"), ("Marcus Bell", "core_faculty"), ("Ingrid Solberg", "core_faculty"),
    ("Tomasz Wójcik", "core_faculty"), ("Aisha Bello", "core_faculty"), ("Kenji Mori", "core_faculty"),
)
# (id, name, activity type, abbreviation, max residents); ids match scheduler.repository.ROTATIONS
ROTATIONS = (
    (1, "Inpatient Medicine", "inpatient", "IM", 6), (2, "ICU", "inpatient", "ICU", 4),
    (3, "Emergency", "emergency", "EM", 4), (4, "Clinic", "outpatient", "CLN", 6),
    (5, "Night Float", "inpatient", "NF", 3), (6, "Elective", "elective", "ELEC", 4),
)
CREATED_BY = "coordinator@residency.lab"


def password_hash(password: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000).hex()


def email_of(name: str) -> str:
    ascii_name = name.lower().replace("ó", "o").replace(" ", ".")
    return ascii_name + "@residency.lab"


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def generate(start: date) -> dict:
    """The whole data set as lists of row dicts (ids assigned here, so it is deterministic)."""
    people = []
    for index, name in enumerate(RESIDENT_NAMES):
        pgy = 1 if index < 7 else 2 if index < 14 else 3
        people.append({"id": index + 1, "name": name, "type": "resident", "email": email_of(name), "pgy_level": pgy,
                       "faculty_role": None, "specialties": [], "target_clinical_blocks": None})
    for index, (name, role) in enumerate(FACULTY):
        people.append({"id": len(RESIDENT_NAMES) + index + 1, "name": f"Dr. {name}", "type": "faculty", "email": email_of(name),
                       "pgy_level": None, "faculty_role": role, "specialties": ["Internal Medicine"],
                       "target_clinical_blocks": 6 if role == "program_director" else 16})
    residents = [p for p in people if p["type"] == "resident"]
    faculty = [p for p in people if p["type"] == "faculty"]

    blocks = []
    for offset in range(DAYS):
        day = start + timedelta(days=offset)
        weekend = day.weekday() >= 5
        for time_of_day in ("AM", "PM"):
            blocks.append({"id": len(blocks) + 1, "date": day, "time_of_day": time_of_day, "block_number": offset // 28 + 1,
                           "is_weekend": weekend, "is_holiday": False, "holiday_name": None,
                           "day_type": "weekend" if weekend else "weekday", "actual_date": day})

    created_at = datetime.combine(start - timedelta(days=14), datetime.min.time(), tzinfo=timezone.utc)
    assignments = []

    def assign(block: dict, person: dict, rotation: int, role: str) -> None:
        assignments.append({"id": len(assignments) + 1, "block_id": block["id"], "person_id": person["id"],
                            "rotation_template_id": rotation, "role": role, "override_reason": None,
                            "override_acknowledged_at": None, "created_by": CREATED_BY, "created_at": created_at})

    for block in blocks:
        offset = (block["date"] - start).days
        week = offset // 7
        if not block["is_weekend"]:
            for index, resident in enumerate(residents):
                assign(block, resident, (index + block["block_number"]) % len(ROTATIONS) + 1, "primary")
            # three attendings supervise every weekday block, rotating through the faculty
            half_day = offset * 2 + (block["time_of_day"] == "PM")
            for k in range(3):
                assign(block, faculty[(half_day + k) % len(faculty)], 1, "supervising")
        else:
            # the weekend call team: each resident takes at most one weekend day every other week
            slot = 0 if block["date"].weekday() == 5 else 2
            team = [r for i, r in enumerate(residents) if (i + week) % 4 == slot]
            for resident in team:
                assign(block, resident, 1, "backup" if resident["pgy_level"] == 3 else "primary")
            assign(block, faculty[offset % len(faculty)], 1, "supervising")

    users = []
    for person in people:
        salt = f"salt-{person['id']}"
        users.append({"id": person["id"], "username": person["email"], "email": person["email"], "person_id": person["id"],
                      "hashed_password": password_hash(LAB_PASSWORD, salt), "password_salt": salt,
                      "role": "faculty" if person["type"] == "faculty" else "resident",
                      "mfa_enabled": person["type"] == "faculty"})
    for username, role in (("admin@residency.lab", "admin"), (CREATED_BY, "coordinator")):
        salt = f"salt-{username}"
        users.append({"id": len(users) + 1, "username": username, "email": username, "person_id": None,
                      "hashed_password": password_hash(LAB_PASSWORD, salt), "password_salt": salt, "role": role,
                      "mfa_enabled": True})
    return {"people": people, "rotation_templates": ROTATIONS, "blocks": blocks, "assignments": assignments, "users": users,
            "start": start}


def check_acgme(data: dict) -> dict:
    """The schedule's ACGME checks; raises ValueError naming the first violation."""
    people = {p["id"]: p for p in data["people"]}
    blocks = {b["id"]: b for b in data["blocks"]}
    start = data["start"]
    hours: dict = defaultdict(lambda: defaultdict(int))  # resident -> week -> hours
    worked_days: dict = defaultdict(set)
    supervised, pgy1_blocks = set(), set()
    for row in data["assignments"]:
        person, block = people[row["person_id"]], blocks[row["block_id"]]
        if person["type"] == "resident":
            hours[person["id"]][(block["date"] - start).days // 7] += BLOCK_HOURS
            worked_days[person["id"]].add(block["date"])
            if person["pgy_level"] == 1:
                pgy1_blocks.add(block["id"])
        elif row["role"] == "supervising":
            supervised.add(block["id"])
    weeks = DAYS // 7
    worst = 0.0
    for person_id, by_week in hours.items():
        for first in range(0, weeks - 3):
            average = sum(by_week[w] for w in range(first, first + 4)) / 4
            worst = max(worst, average)
            if average > 80:
                raise ValueError(f"{people[person_id]['name']}: {average:.0f} h/week averaged over weeks {first + 1}-{first + 4} (limit 80)")
        for week in range(weeks):
            days = {start + timedelta(days=week * 7 + d) for d in range(7)}
            if days <= worked_days[person_id]:
                raise ValueError(f"{people[person_id]['name']}: no day off in week {week + 1}")
    unsupervised = pgy1_blocks - supervised
    if unsupervised:
        raise ValueError(f"PGY-1 residents work blocks {sorted(unsupervised)[:5]} without a supervising faculty assignment")
    return {"max_weekly_hours_4wk_avg": worst, "pgy1_blocks_supervised": len(pgy1_blocks)}


def write(conn: psycopg.Connection, data: dict, schema: bool) -> None:
    with conn.cursor() as cur:
        if schema:
            cur.execute(SCHEMA.read_text(encoding="utf-8"))
        cur.executemany("INSERT INTO rotation_templates (id, name, activity_type, abbreviation, max_residents) VALUES (%s, %s, %s, %s, %s)",
                        data["rotation_templates"])
        cur.executemany("INSERT INTO people (id, name, type, email, pgy_level, faculty_role, specialties, target_clinical_blocks) "
                        "VALUES (%(id)s, %(name)s, %(type)s, %(email)s, %(pgy_level)s, %(faculty_role)s, %(specialties)s, %(target_clinical_blocks)s)",
                        data["people"])
        with cur.copy("COPY blocks (id, date, time_of_day, block_number, is_weekend, is_holiday, holiday_name, day_type, actual_date) FROM STDIN") as copy:
            for b in data["blocks"]:
                copy.write_row((b["id"], b["date"], b["time_of_day"], b["block_number"], b["is_weekend"], b["is_holiday"],
                                b["holiday_name"], b["day_type"], b["actual_date"]))
        with cur.copy("COPY assignments (id, block_id, person_id, rotation_template_id, role, override_reason, override_acknowledged_at, "
                      "created_by, created_at) FROM STDIN") as copy:
            for a in data["assignments"]:
                copy.write_row((a["id"], a["block_id"], a["person_id"], a["rotation_template_id"], a["role"], a["override_reason"],
                                a["override_acknowledged_at"], a["created_by"], a["created_at"]))
        cur.executemany("INSERT INTO users (id, username, email, person_id, hashed_password, password_salt, role, mfa_enabled) "
                        "VALUES (%(id)s, %(username)s, %(email)s, %(person_id)s, %(hashed_password)s, %(password_salt)s, %(role)s, %(mfa_enabled)s)",
                        data["users"])
        now = datetime.now(timezone.utc)
        cur.executemany("INSERT INTO sessions (id, user_id, created_at, expires_at, ip_address, user_agent) VALUES (%s, %s, %s, %s, %s, %s)",
                        [(uuid.UUID(int=i + 1), (i % len(data["users"])) + 1, now - timedelta(hours=i + 1), now + timedelta(hours=8 - i),
                          f"127.0.0.{10 + i}", "Mozilla/5.0 (lab)") for i in range(5)])
        cur.execute("INSERT INTO audit_log (user_id, action, entity, entity_id, details) "
                    "SELECT id, 'schedule.generated', 'blocks', %s, %s FROM users WHERE role = 'coordinator'",
                    (f"{data['start']}/{DAYS}d", json.dumps({"assignments": len(data["assignments"]), "blocks": len(data["blocks"])})))
        for table in ("people", "rotation_templates", "blocks", "assignments", "users"):
            # explicit ids were inserted: move each sequence past them
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")  # nosec: fixed names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler.db.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--schema", action="store_true", help="create the tables first (an empty database)")
    parser.add_argument("--start", type=date.fromisoformat, default=monday_of(date.today()), help="first day (default: this Monday)")
    parser.add_argument("--check-only", action="store_true", help="generate and check, write nothing")
    args = parser.parse_args(argv)
    data = generate(args.start)
    try:
        checks = check_acgme(data)
    except ValueError as exc:
        print(f"seed: the generated schedule breaks an ACGME rule: {exc}", file=sys.stderr)
        return 1
    if not args.check_only:
        url = os.environ.get("DATABASE_URL")
        if not url:
            print("seed: DATABASE_URL is not set", file=sys.stderr)
            return 2
        with psycopg.connect(url, connect_timeout=10) as conn:
            write(conn, data, args.schema)
    summary = {"start": args.start.isoformat(), "days": DAYS, "people": len(data["people"]),
               "residents": sum(p["type"] == "resident" for p in data["people"]), "faculty": sum(p["type"] == "faculty" for p in data["people"]),
               "blocks": len(data["blocks"]), "assignments": len(data["assignments"]), "users": len(data["users"]), **checks}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
