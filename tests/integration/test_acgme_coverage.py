"""acgme_coverage proposes, schedule_change applies: on the lab's seeded schedule in a real PostgreSQL 15.

The seed (lab/scheduler/db/seed.py) is compliant; one PGY-2 resident is then put on every weekend day of
four weeks, as a careless schedule edit would: no day off in 28 days and 84 h a week. The plan must
prevent both without creating a violation for anyone, and applying it must leave a compliant schedule.
"""

from __future__ import annotations

import importlib.util
from datetime import date, datetime, timedelta, timezone

import pytest

from ansible_collections.sre.runbooks.plugins.modules import acgme_compliance, acgme_coverage, schedule_change
from tests.integration.test_acgme_postgres import SEED, _create_database, _drop_database
from tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]

START = date(2026, 4, 6)  # a Monday
TZ = "America/New_York"
AS_OF = datetime.combine(START + timedelta(days=20), datetime.min.time(), tzinfo=timezone.utc).isoformat()
OVERWORKED = 8  # a PGY-2 in the seed


def _seed():
    spec = importlib.util.spec_from_file_location("lab_scheduler_seed_cov", SEED)
    seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed)
    return seed


def seeded_with_careless_edit(server, name: str, start: date, first: date, last: date) -> None:
    """The lab's seeded schedule from ``start``, plus OVERWORKED on every weekend day from ``first`` to ``last``."""
    _create_database(server, name)
    seed = _seed()
    with server.connect(superuser=False, dbname=name) as conn:
        seed.write(conn, seed.generate(start), schema=True)
        conn.execute("""INSERT INTO assignments (block_id, person_id, rotation_template_id, role, created_by)
                        SELECT b.id, %s, 1, 'primary', 'careless-edit' FROM blocks b
                        WHERE b.date BETWEEN %s AND %s AND b.is_weekend
                          AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.block_id = b.id AND a.person_id = %s)""",
                     (OVERWORKED, first, last, OVERWORKED))


@pytest.fixture()
def schedule_db(postgres_server):
    name = "acgme_coverage"
    seeded_with_careless_edit(postgres_server, name, START, START + timedelta(days=14), START + timedelta(days=41))
    yield name
    _drop_database(postgres_server, name)


def args(server, database, **extra):
    full = server.module_args(superuser=False, database=database)
    full.update({"timezone": TZ, "as_of": AS_OF})
    full.update(extra)
    return full


def assignments(server, database):
    with server.connect(superuser=False, dbname=database) as conn:
        return conn.execute("SELECT id, block_id, person_id, role, override_reason FROM assignments ORDER BY id").fetchall()


def test_plan_prevents_the_future_violations_and_applying_it_leaves_a_compliant_schedule(monkeypatch, postgres_server, schedule_db):
    before, failed = run_module(monkeypatch, acgme_compliance.main, args(postgres_server, schedule_db, source="postgres"))
    assert not failed, before.get("msg")
    assert {(v["rule"], v["person_id"], v["status"]) for v in before["violations"]} == {
        ("one_day_off_in_7", OVERWORKED, "future"), ("weekly_80h_avg4w", OVERWORKED, "future")}

    plan, failed = run_module(monkeypatch, acgme_coverage.main, args(postgres_server, schedule_db, source="postgres"))
    assert not failed, plan.get("msg")
    assert plan["changed"] is False
    assert plan["resolved"] is True, plan["after"]
    assert plan["after"]["new_violations"] == [] and plan["after"]["future_violations"] == 0
    moved = [c for c in plan["changes"] if c["reason"] == "violation"]
    assert moved and all(c["from_person_id"] == OVERWORKED for c in moved)
    assert all(c["action"] == "reassign" and c["to_person_id"] != OVERWORKED and c["block_id"] for c in moved)
    assert all(c["start"] >= AS_OF[:10] for c in moved)  # nothing already worked is moved
    assert plan["needs_decision"] == []

    rows = assignments(postgres_server, schedule_db)
    checked, failed = run_module(monkeypatch, schedule_change.main, args(
        postgres_server, schedule_db, changes=plan["changes"], reason="test: prevent ACGME violation", incident_id="INC-1",
        _ansible_check_mode=True, _ansible_diff=True))
    assert not failed, checked.get("msg")
    assert checked["changed"] is True and "diff" in checked
    assert checked["verification"]["future_after"] == 0
    assert assignments(postgres_server, schedule_db) == rows  # check mode touched nothing

    applied, failed = run_module(monkeypatch, schedule_change.main, args(
        postgres_server, schedule_db, changes=plan["changes"], reason="test: prevent ACGME violation", incident_id="INC-1"))
    assert not failed, applied.get("msg")
    assert applied["changed"] is True
    assert {(p["rule"], p["person_id"]) for p in applied["verification"]["prevented"]} == {
        ("one_day_off_in_7", str(OVERWORKED)), ("weekly_80h_avg4w", str(OVERWORKED))}
    after, failed = run_module(monkeypatch, acgme_compliance.main, args(postgres_server, schedule_db, source="postgres"))
    assert not failed and [v for v in after["violations"] if v["status"] == "future"] == []
    with postgres_server.connect(superuser=False, dbname=schedule_db) as conn:
        audit = conn.execute("SELECT action, details->>'incident_id', details->'before'->>'person_id' FROM audit_log "
                             "WHERE action LIKE 'schedule_change.%%'").fetchall()
    assert len(audit) == len(plan["changes"])
    assert set(audit) == {("schedule_change.reassign", "INC-1", str(OVERWORKED))}

    again, failed = run_module(monkeypatch, schedule_change.main, args(
        postgres_server, schedule_db, changes=plan["changes"], reason="test: prevent ACGME violation", incident_id="INC-1"))
    assert not failed and again["changed"] is False


def test_a_stale_plan_applies_nothing(monkeypatch, postgres_server, schedule_db):
    plan, failed = run_module(monkeypatch, acgme_coverage.main, args(postgres_server, schedule_db, source="postgres"))
    assert not failed
    first, last = plan["changes"][0], plan["changes"][-1]
    with postgres_server.connect(superuser=False, dbname=schedule_db) as conn:  # someone else moved the last shift meanwhile
        conn.execute("UPDATE assignments SET person_id = %s WHERE id = %s", (last["to_person_id"] % 20 + 1, last["assignment_id"]))
    rows = assignments(postgres_server, schedule_db)
    result, failed = run_module(monkeypatch, schedule_change.main, args(
        postgres_server, schedule_db, changes=plan["changes"], reason="stale"))
    assert failed and f"assignment {last['assignment_id']} belongs to person" in result["msg"] and "nothing was applied" in result["msg"]
    assert assignments(postgres_server, schedule_db) == rows
    assert any(r[0] == first["assignment_id"] and r[2] == OVERWORKED for r in rows)


def test_a_change_that_creates_a_violation_is_rolled_back(monkeypatch, postgres_server, schedule_db):
    # Give the overworked resident yet another colleague's weekend shift: verification must refuse.
    with postgres_server.connect(superuser=False, dbname=schedule_db) as conn:
        victim = conn.execute("""SELECT a.id, a.person_id FROM assignments a JOIN blocks b ON b.id = a.block_id JOIN people p ON p.id = a.person_id
                                 WHERE p.type = 'resident' AND a.person_id <> %s AND b.date > %s
                                   AND NOT EXISTS (SELECT 1 FROM assignments x WHERE x.block_id = a.block_id AND x.person_id = %s)
                                 ORDER BY b.date LIMIT 1""", (OVERWORKED, START + timedelta(days=21), OVERWORKED)).fetchone()
    rows = assignments(postgres_server, schedule_db)
    change = {"action": "reassign", "assignment_id": victim[0], "from_person_id": victim[1], "to_person_id": OVERWORKED}
    result, failed = run_module(monkeypatch, schedule_change.main, args(postgres_server, schedule_db, changes=[change], reason="bad idea"))
    assert failed and "would create or worsen" in result["msg"], result
    assert result["verification"]["new_or_worse"]
    assert assignments(postgres_server, schedule_db) == rows


def test_override_is_logged_once_with_its_justification(monkeypatch, postgres_server, schedule_db):
    rows = assignments(postgres_server, schedule_db)
    target = next(r for r in rows if r[2] == OVERWORKED)
    change = [{"action": "override", "assignment_id": target[0]}]
    result, failed = run_module(monkeypatch, schedule_change.main, args(
        postgres_server, schedule_db, changes=change, reason="Unavoidable: PD approved", verify=False))
    assert not failed and result["changed"] is True
    assert result["results"][0]["after"]["override_reason"] == "Unavoidable: PD approved"
    assert result["results"][0]["after"]["override_acknowledged_at"]
    again, failed = run_module(monkeypatch, schedule_change.main, args(
        postgres_server, schedule_db, changes=change, reason="Unavoidable: PD approved", verify=False))
    assert not failed and again["changed"] is False


@pytest.mark.parametrize("changes, message", [
    ([{"action": "remove", "assignment_id": 1, "from_person_id": 1}], "changes[0]: remove takes assignment 1 off the schedule"),
    ([{"action": "reassign", "assignment_id": "x", "from_person_id": 1, "to_person_id": 2}], "changes[0].assignment_id: expected an integer"),
    ([{"action": "swap", "assignment_id": 1}], "changes[0].action: expected one of"),
    ([{"action": "add", "block_id": 1, "person_id": 2, "role": "boss"}], "changes[0].role: expected one of"),
    ([{"action": "reassign", "assignment_id": 1, "from_person_id": 1, "to_person_id": 2, "sql": "'; DROP TABLE people; --"}],
     "changes[0]: unknown field(s) sql"),
])
def test_bad_changes_are_named_and_nothing_is_touched(monkeypatch, postgres_server, schedule_db, changes, message):
    rows = assignments(postgres_server, schedule_db)
    result, failed = run_module(monkeypatch, schedule_change.main, args(postgres_server, schedule_db, changes=changes, reason="test"))
    assert failed and message in result["msg"], result["msg"]
    assert assignments(postgres_server, schedule_db) == rows
