"""acgme_compliance reading the Residency Scheduler schema from a real PostgreSQL 15 (tests/integration/_postgres.py).

One database gets the lab's schema (lab/scheduler/db/schema.sql) and a schedule with one planted violation per
rule, each hand-computed below; the module must find exactly those. A second gets the lab's own seeded
schedule (lab/scheduler/db/seed.py, ACGME-compliant by construction), which must come out clean.
"""

from __future__ import annotations

import importlib.util
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.modules import acgme_compliance
from tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "lab" / "scheduler" / "db" / "schema.sql"
SEED = REPO / "lab" / "scheduler" / "db" / "seed.py"
TZ = "America/New_York"
START = date(2026, 4, 6)  # a Monday, away from DST changes
AS_OF = "2026-04-16T12:00:00-04:00"  # day 10, noon

ROTATIONS = [  # id, name, activity_type, abbreviation
    (1, "Inpatient Medicine", "inpatient", "IM"),
    (2, "Call", "call", "CALL"),
    (3, "Long Day", "inpatient", "LD"),
    (4, "Night Float", "inpatient", "NF"),
    (5, "Leave", "leave", "LV"),
    (6, "Home Call", "home_call", "HC"),
]
IM, CALL, LD, NF, LEAVE, HOME = 1, 2, 3, 4, 5, 6
PEOPLE = [  # id, name, type, pgy_level, faculty_role
    (1, "Over Eighty", "resident", 2, None),
    (2, "No Day Off", "resident", 2, None),
    (3, "Thirty Hours", "resident", 2, None),
    (4, "Short Rest After Call", "resident", 2, None),
    (5, "Short Rest", "resident", 2, None),
    (6, "Every Third Night Plus", "resident", 3, None),
    (7, "Unsupervised Intern", "resident", 1, None),
    (8, "Intern On Leave", "resident", 1, None),
    (9, "Dr. Tireless", "faculty", None, "core_faculty"),
]
# Long days 06:00-20:00 and night float 19:00-07:00 need their own hours; call and leave use the defaults' meaning.
ASSIGNMENT_RULES = [
    {"match": {"activity": "call"}, "kind": "call", "hours": {"AM": "07:00-13:00", "PM": "13:00-07:00"}},
    {"match": {"rotation_abbreviation": "LD"}, "kind": "work", "hours": {"AM": "06:00-13:00", "PM": "13:00-20:00"}},
    {"match": {"rotation_abbreviation": "NF"}, "kind": "work", "hours": "19:00-07:00"},
    {"match": {"activity": "leave"}, "kind": "ignore"},
    {"match": {"activity": "home_call"}, "kind": "home_call"},
]


def planted_schedule() -> list[tuple[int, int, str, int, str]]:
    """(day offset, person, time_of_day, rotation, role) rows; each person plants one violation (see PLANTED)."""
    rows = []

    def add(day, person, tods, rotation, role="primary"):
        rows.extend((day, person, tod, rotation, role) for tod in tods)

    for day in range(35):  # 1: long days 06:00-20:00, six a week: 24 x 14 h = 336 h in every 28 days
        if day % 7 != 6:
            add(day, 1, "AM PM".split(), LD)
    for day in range(26):  # 2: every day for 26 days: 312 h (78 h/week, compliant) but only 2 free days in 28
        add(day, 2, ["AM", "PM"], IM)
    add(2, 3, ["AM"], IM)  # 3: Wed 07:00 work, PM call to Thu 07:00, Thu AM work to 13:00: 30 h continuous
    add(2, 3, ["PM"], CALL)
    add(3, 3, ["AM"], IM)
    add(9, 4, ["AM"], IM)  # 4: 07:00-07:00 call (24 h) then back at 13:00: 6 h of rest
    add(9, 4, ["PM"], CALL)
    add(10, 4, ["PM"], IM)
    add(16, 5, ["AM"], IM)  # 5: 07:00-13:00 then night float from 19:00: 6 h between shifts
    add(16, 5, ["PM"], NF)
    for day in range(0, 28, 3):  # 6: PM call on days 0, 3, ..., 27: 10 calls starting in days 0-27
        add(day, 6, ["PM"], CALL)
    for day in range(5):  # 7 (PGY-1) with faculty 9 on weekdays, then alone on Saturday morning
        add(day, 7, ["AM", "PM"], IM)
        add(day, 9, ["AM"], IM, "supervising")
        add(day, 9, ["PM"], CALL, "supervising")  # faculty 9: 07:00 to 07:00, five days running: never flagged
    add(5, 7, ["AM"], IM)
    for day in range(7, 12):  # 8 (PGY-1): leave with no faculty around is not work; neither is home call
        add(day, 8, ["AM", "PM"], LEAVE)
    add(12, 8, ["PM"], HOME)
    return rows


PLANTED = {  # rule: (person, value, status at AS_OF)
    "weekly_80h_avg4w": (1, 84.0, "future"),
    "one_day_off_in_7": (2, 2, "future"),
    "continuous_24h_plus4": (3, 30.0, "historical"),
    "rest_14h_after_24h_call": (4, 6.0, "future"),  # the short rest ends at 13:00, after AS_OF
    "rest_8h_between_shifts": (5, 6.0, "future"),
    "call_q3_avg4w": (6, 10, "future"),
    "pgy1_supervision": (7, 6.0, "historical"),
}


def _create_database(server, name: str) -> None:
    with server.connect() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")  # test-owned names
        conn.execute(f"CREATE DATABASE {name} OWNER {server.app_user}")


def _drop_database(server, name: str) -> None:
    with server.connect() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def planted_db(postgres_server):
    name = "acgme_planted"
    _create_database(postgres_server, name)
    with postgres_server.connect(superuser=False, dbname=name) as conn:
        conn.execute(SCHEMA.read_text(encoding="utf-8"))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO rotation_templates (id, name, activity_type, abbreviation) VALUES (%s, %s, %s, %s)", ROTATIONS)
            cur.executemany("INSERT INTO people (id, name, type, email, pgy_level, faculty_role) VALUES (%s, %s, %s, %s, %s, %s)",
                            [(p[0], p[1], p[2], f"p{p[0]}@residency.test", p[3], p[4]) for p in PEOPLE])
            blocks = {}
            for offset in range(-7, 60):
                day = START + timedelta(days=offset)
                for tod in ("AM", "PM"):
                    blocks[(offset, tod)] = len(blocks) + 1
                    cur.execute("INSERT INTO blocks (id, date, time_of_day, block_number, is_weekend, day_type, actual_date) "
                                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                                (blocks[(offset, tod)], day, tod, 1, day.weekday() >= 5, "weekend" if day.weekday() >= 5 else "weekday", day))
            cur.executemany("INSERT INTO assignments (block_id, person_id, rotation_template_id, role, created_by) VALUES (%s, %s, %s, %s, %s)",
                            [(blocks[(day, tod)], person, rotation, role, "test") for day, person, tod, rotation, role in planted_schedule()])
    yield name
    _drop_database(postgres_server, name)


def check_db(monkeypatch, server, database, **args):
    full = server.module_args(superuser=False, database=database)
    full.update({"source": "postgres", "timezone": TZ, "as_of": AS_OF})
    full.update(args)
    return run_module(monkeypatch, acgme_compliance.main, full)


def test_finds_exactly_the_planted_violations(monkeypatch, postgres_server, planted_db):
    result, failed = check_db(monkeypatch, postgres_server, planted_db, assignment_rules=ASSIGNMENT_RULES)
    assert not failed, result.get("msg")
    found = {v["rule"]: (v["person_id"], v["value"], v["status"]) for v in result["violations"]}
    assert len(result["violations"]) == len(PLANTED)
    assert found == PLANTED
    assert result["changed"] is False
    assert result["source"]["ignored_assignments"] == 10  # the leave half-days
    assert result["source"]["missing_columns"] == []
    by_rule = {v["rule"]: v for v in result["violations"]}
    assert by_rule["continuous_24h_plus4"]["start"] == "2026-04-08T07:00:00-04:00"
    assert by_rule["continuous_24h_plus4"]["end"] == "2026-04-09T13:00:00-04:00"
    assert by_rule["pgy1_supervision"]["start"] == "2026-04-11T07:00:00-04:00"
    # shift ids are assignment ids: the three assignments of the 30 h period
    assert len(by_rule["continuous_24h_plus4"]["shift_ids"]) == 3
    assert all(isinstance(i, int) for i in by_rule["continuous_24h_plus4"]["shift_ids"])
    assert "9" not in {str(v["person_id"]) for v in result["violations"]}  # the faculty member's 5-day run is not flagged
    faculty_hours = [h for h in result["hours"] if h["person_id"] == 9][0]
    assert faculty_hours["total_hours"] == 5 * 24.0


def test_date_range_limits_what_is_read(monkeypatch, postgres_server, planted_db):
    first, last = START + timedelta(days=7), START + timedelta(days=13)
    result, failed = check_db(monkeypatch, postgres_server, planted_db, assignment_rules=ASSIGNMENT_RULES,
                              date_from=first.isoformat(), date_to=last.isoformat())
    assert not failed, result.get("msg")
    assert [(v["rule"], v["person_id"]) for v in result["violations"]] == [("rest_14h_after_24h_call", 4)]
    assert result["source"]["date_from"] == first.isoformat()
    assert result["source"]["ignored_assignments"] == 10


def test_default_mapping_treats_unknown_rotations_as_half_day_work(monkeypatch, postgres_server, planted_db):
    # Without the long-day and night-float rules those rows are 6 h blocks: no 80 h week, and 07:00-13:00 + 13:00-19:00 touch.
    result, failed = check_db(monkeypatch, postgres_server, planted_db)
    assert not failed, result.get("msg")
    rules = {v["rule"] for v in result["violations"]}
    assert "weekly_80h_avg4w" not in rules and "rest_8h_between_shifts" not in rules
    assert {"continuous_24h_plus4", "rest_14h_after_24h_call", "call_q3_avg4w", "pgy1_supervision", "one_day_off_in_7"} <= rules


def test_wrong_password_fails_naming_the_option(monkeypatch, postgres_server, planted_db):
    result, failed = check_db(monkeypatch, postgres_server, planted_db, password="not-the-password")
    assert failed and result["msg"].startswith("password:")
    assert "not-the-password" not in str(result)


def test_the_lab_seeded_schedule_is_compliant(monkeypatch, postgres_server):
    spec = importlib.util.spec_from_file_location("lab_scheduler_seed", SEED)
    seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed)
    name = "acgme_lab_seed"
    _create_database(postgres_server, name)
    try:
        data = seed.generate(START)
        with postgres_server.connect(superuser=False, dbname=name) as conn:
            seed.write(conn, data, schema=True)
        as_of = datetime.combine(START + timedelta(days=20), datetime.min.time(), tzinfo=timezone.utc).isoformat()
        result, failed = check_db(monkeypatch, postgres_server, name, as_of=as_of)
        assert not failed, result.get("msg")
        assert result["violations"] == []
        assert result["source"]["assignments"] == len(data["assignments"])
        residents = [h for h in result["hours"] if h["type"] == "resident"]
        assert len(residents) == 20 and all(0 < h["max_avg_4w"] <= 80 for h in residents)
        # the seed's own check counts 6 h per half-day block, as the default block_hours do
        assert result["summary"]["max_resident_avg_4w"]["hours"] == seed.check_acgme(data)["max_weekly_hours_4wk_avg"]
    finally:
        _drop_database(postgres_server, name)
