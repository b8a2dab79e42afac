"""acgme_coverage's planner on small hand-made schedules (the rules themselves are tested in test_acgme.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import ScheduleError, check
from ansible_collections.sre.runbooks.plugins.module_utils._acgme_plan import plan

TZ = "America/New_York"
MONDAY = datetime(2026, 11, 2)
AS_OF = "2026-11-16T00:00:00"  # the start of week 3


def resident(pid, pgy=2):
    return {"id": pid, "name": f"R{pid}", "type": "resident", "pgy_level": pgy}


def faculty(pid):
    return {"id": pid, "name": f"F{pid}", "type": "faculty", "pgy_level": None}


def shift(sid, pid, day, start=7, end=19, kind="work"):
    base = MONDAY + timedelta(days=day)
    return {"id": sid, "person_id": pid, "start": base.replace(hour=start).isoformat(), "end": base.replace(hour=end).isoformat(), "kind": kind}


def every_day(pid, days, prefix, start=7, end=19):
    return [shift(f"{prefix}{d}", pid, d, start, end) for d in days]


def future(result_or_report):
    return [v for v in result_or_report["violations"] if v["status"] == "future"]


def test_no_day_off_is_prevented_by_handing_future_days_to_a_free_colleague():
    people = [resident(1), resident(2), faculty(9)]
    shifts = every_day(1, range(28), "a") + every_day(2, [d for d in range(28) if d % 7 < 5], "b", 7, 17)
    result = plan(shifts, people, as_of=AS_OF, timezone=TZ)
    assert result["resolved"] is True and result["after"]["new_violations"] == []
    moved = [c for c in result["changes"] if c["reason"] == "violation"]
    assert moved and all(c["from_person_id"] == 1 and c["start"] >= "2026-11-16" for c in moved)
    covered = [c for c in moved if c["action"] == "reassign"]
    assert covered and all(c["to_person_id"] == 2 for c in covered)
    # The plan is what it claims: applying it by hand leaves no future violation.
    applied = {s["id"]: dict(s) for s in shifts}
    for change in result["changes"]:
        if change["action"] == "reassign":
            applied[change["assignment_id"]]["person_id"] = change["to_person_id"]
        elif change["action"] == "remove":
            del applied[change["assignment_id"]]
    assert future(check(list(applied.values()), people, as_of=AS_OF, timezone=TZ)) == []


def test_without_a_compliant_cover_the_move_needs_a_decision():
    people = [resident(1), resident(3, pgy=1)]  # the only colleague is a PGY-1 and no faculty works: covering would leave them unsupervised
    shifts = every_day(1, range(28), "a")
    result = plan(shifts, people, as_of=AS_OF, timezone=TZ, rules=["one_day_off_in_7", "pgy1_supervision"])
    assert result["needs_decision"] and all(c["action"] == "remove" and c["to_person_id"] is None for c in result["needs_decision"])
    assert result["resolved"] is True  # removing is enough for the rules; a person decides whether the shift may go uncovered


def test_a_pgy1_gap_gets_the_least_busy_free_faculty_member():
    people = [resident(3, pgy=1), faculty(8), faculty(9)]
    shifts = [shift("c", 3, 18, 7, 12), shift("f8", 8, 17), shift("f9a", 9, 16), shift("f9b", 9, 17)]
    result = plan(shifts, people, as_of=AS_OF, timezone=TZ)
    [add] = [c for c in result["changes"] if c["action"] == "add"]
    assert add["person_id"] == 8 and add["role"] == "supervising" and add["supervises_shift_id"] == "c"
    assert result["resolved"] is True


def test_a_resident_approaching_80_hours_gets_the_latest_shifts_of_the_week_covered():
    people = [resident(1), resident(2)]
    # week 3: Mon-Sat 13 h = 78 h (>= 75); history weeks light enough to stay under 80 on average
    shifts = [shift(f"a{d}", 1, d, 6, 19) for d in range(14, 20)] + every_day(2, [14, 15], "b")
    result = plan(shifts, people, as_of=AS_OF, timezone=TZ)
    [proposal] = [p for p in result["proposals"] if p["reason"] == "approaching"]
    assert proposal["hours_before"] == 78 and proposal["hours_after"] < 75
    assert proposal["moved_shift_ids"] == ["a19"]
    assert result["changes"][0]["to_person_id"] == 2


def test_started_shifts_never_move():
    people = [resident(1), resident(2)]
    shifts = every_day(1, range(28), "a")
    result = plan(shifts, people, as_of="2026-11-29T08:00:00", timezone=TZ)  # the last day has begun
    assert result["changes"] == [] and result["resolved"] is False
    assert result["after"]["future_violations"] == result["before"]["future_violations"]


def test_bad_input_is_named():
    with pytest.raises(ScheduleError, match=r"shifts\[0\].person_id: unknown person 5"):
        plan([shift("a", 5, 0)], [resident(1)], as_of=AS_OF, timezone=TZ)
