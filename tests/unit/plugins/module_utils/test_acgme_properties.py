"""Property checks (hypothesis) of acgme_compliance against the rules of TARGETS.md (Common Program Requirements VI.F).

* Adding a shift never lowers anyone's hours, and never clears a weekly-80 h, day-off, 24+4 h or q3-call violation.
* A schedule built under every limit (≤ 80 h a week, a fixed day off a week, ≤ 13 h 20 shifts with ≥ 10 h between,
  in-house call every fourth night, PGY-1 always with faculty on site) gives no violation at all.
* weekly_80h_avg4w is flagged exactly when some 28-day window holds more than 320 h (computed here, day by day).
* The result does not depend on the order of the shifts, and the same input gives the same output.
* The Postgres mapping's inputs (block_hours, assignment_rules, dates) and assignment rows: a shift, None or a
  ScheduleError naming the field, never another exception.

Derandomized, bounded: a few hundred examples in all, a few seconds.
"""

from __future__ import annotations

import copy
import os
import random
from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import (
    PostgresMapping,
    ScheduleError,
    assignment_to_shift,
    check,
)

UTC = timezone.utc
BASE = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday
AS_OF = "2026-12-01T00:00:00+00:00"
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow],
                phases=(Phase.explicit, Phase.generate) if os.environ.get("HYPOTHESIS_NO_SHRINK") else tuple(Phase))
PEOPLE = [
    {"id": "p1", "name": "Intern", "type": "resident", "pgy_level": 1},
    {"id": "p2", "name": "Resident", "type": "resident", "pgy_level": 2},
    {"id": "p3", "name": "Senior", "type": "resident", "pgy_level": 3},
    {"id": "f1", "name": "Attending", "type": "faculty"},
]
RESIDENTS = ("p1", "p2", "p3")
MONOTONE_RULES = ("weekly_80h_avg4w", "one_day_off_in_7", "continuous_24h_plus4", "call_q3_avg4w")


def shift(person, start_h, length_h, kind="work"):
    start = BASE + timedelta(hours=start_h)
    return {"person_id": person, "start": start.isoformat(), "end": (start + timedelta(hours=length_h)).isoformat(), "kind": kind}


any_shift = st.builds(lambda person, start_min, length_min, kind: shift(person, start_min / 60, length_min / 60, kind),
                      st.sampled_from(RESIDENTS + ("f1",)), st.integers(0, 60 * 24 * 60), st.integers(30, 30 * 60),
                      st.sampled_from(["work", "call", "moonlighting"]))


def run(shifts, tz="UTC"):
    return check(shifts, PEOPLE, as_of=AS_OF, timezone=tz)


def flagged(result, rules=MONOTONE_RULES):
    return {(v["rule"], v["person_id"]) for v in result["violations"] if v["rule"] in rules}


def hours_of(result):
    return {h["person_id"]: h["total_hours"] for h in result["hours"]}


@FUZZ
@given(shifts=st.lists(any_shift, max_size=40, unique_by=lambda s: (s["person_id"], s["start"], s["end"], s["kind"])), extra=any_shift)
def test_adding_a_shift_never_lowers_hours_nor_clears_a_violation(shifts, extra):
    if any((s["person_id"], s["start"], s["end"], s["kind"]) == (extra["person_id"], extra["start"], extra["end"], extra["kind"])
           for s in shifts):
        return
    before, after = run(shifts), run(shifts + [extra])
    for person, total in hours_of(before).items():
        assert hours_of(after)[person] >= total
    assert hours_of(after)[extra["person_id"]] >= hours_of(before).get(extra["person_id"], 0)
    assert flagged(before) <= flagged(after)


@st.composite
def compliant_schedule(draw):
    """Four to six weeks of a schedule under every limit, PGY-1 supervised, in UTC or New York (DST included)."""
    weeks = draw(st.integers(4, 6))
    shifts = []
    for person in RESIDENTS:
        start_hour = draw(st.integers(5, 9))
        day_off = draw(st.integers(0, 6))  # the same weekday each week: exactly 4 free days in any 28
        call_phase = draw(st.integers(0, 3))
        for day in range(weeks * 7):
            if day % 7 == day_off:
                continue
            minutes = draw(st.integers(60, 800))  # at most 13 h 20: 6 × 13 h 20 = 80 h a week
            kind = "call" if day % 4 == call_phase else draw(st.sampled_from(["work", "work", "moonlighting"]))
            if person == "p1" and kind == "moonlighting":
                kind = "work"  # PGY-1s do not moonlight
            shifts.append((person, day, start_hour, minutes, kind))
    return shifts


def local_shifts(spec, tz_name):
    from zoneinfo import ZoneInfo  # pylint: disable=import-outside-toplevel
    zone = ZoneInfo(tz_name)
    out = []
    first = date(2026, 9, 7)
    for person, day, start_hour, minutes, kind in spec:
        start = datetime.combine(first + timedelta(days=day), datetime.min.time(), tzinfo=zone).replace(hour=start_hour)
        out.append({"person_id": person, "start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat(), "kind": kind})
    # faculty on site all day, every day, for the PGY-1
    for day in range(max(d for _p, d, *_rest in spec) + 1):
        start = datetime.combine(first + timedelta(days=day), datetime.min.time(), tzinfo=zone).replace(hour=4)
        out.append({"person_id": "f1", "start": start.isoformat(), "end": (start + timedelta(hours=19, minutes=59)).isoformat(), "kind": "work"})
    return out


@settings(FUZZ, max_examples=25)
@given(spec=compliant_schedule(), tz=st.sampled_from(["UTC", "America/New_York"]))
def test_a_schedule_under_every_limit_has_no_violation(spec, tz):
    result = run(local_shifts(spec, tz), tz)
    assert result["violations"] == [], [(v["rule"], v["person_id"], v["detail"]) for v in result["violations"]][:3]
    for entry in result["hours"]:
        if entry["type"] == "resident":
            assert entry["max_avg_4w"] <= 80


@st.composite
def heavy_schedule(draw):
    """One resident, daily shifts of 8-18 h (with gaps): some schedules cross 320 h in 28 days, some not."""
    days = draw(st.integers(20, 60))
    out = []
    for day in range(days):
        if draw(st.integers(0, 9)) == 0:
            continue
        out.append(shift("p2", day * 24 + 5, draw(st.integers(8 * 4, 18 * 4)) / 4))
    return out


@FUZZ
@given(shifts=heavy_schedule())
def test_weekly_80h_is_flagged_exactly_when_a_28_day_window_exceeds_320h(shifts):
    if not shifts:
        return
    result = run(shifts)
    per_day: dict[int, float] = {}
    for s in shifts:  # shifts start at 05:00 and last at most 18 h: each lies inside one UTC day
        day = (datetime.fromisoformat(s["start"]) - BASE).days
        per_day[day] = per_day.get(day, 0) + (datetime.fromisoformat(s["end"]) - datetime.fromisoformat(s["start"])).total_seconds() / 3600
    last = max(per_day)
    worst = max(sum(per_day.get(d, 0) for d in range(anchor, anchor + 28)) for anchor in range(-27, last + 1))
    weekly = [v for v in result["violations"] if v["rule"] == "weekly_80h_avg4w"]
    assert bool(weekly) == (worst > 320), (worst, weekly)
    if weekly:
        assert max(v["value"] for v in weekly) == round(worst / 4, 2) or abs(max(v["value"] for v in weekly) - worst / 4) < 0.01
    entry = next(h for h in result["hours"] if h["person_id"] == "p2")
    assert abs(entry["max_avg_4w"] - worst / 4) < 0.01


@FUZZ
@given(shifts=st.lists(any_shift, max_size=30, unique_by=lambda s: (s["person_id"], s["start"], s["end"], s["kind"])), seed=st.integers(0, 99))
def test_order_of_the_shifts_does_not_matter_and_output_is_deterministic(shifts, seed):
    first = run(shifts)
    assert run(copy.deepcopy(shifts)) == first
    shuffled = list(shifts)
    random.Random(seed).shuffle(shuffled)
    second = run(shuffled)

    def essence(result):
        return (sorted((v["rule"], v["person_id"], v["start"], v["end"], v["value"]) for v in result["violations"]),
                sorted((h["person_id"], h["total_hours"], h["max_avg_4w"]) for h in result["hours"]))
    assert essence(second) == essence(first)


# -- the Postgres mapping's inputs ----------------------------------------------------------------------------------

junk = st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 12), st.floats(allow_nan=True), st.text(max_size=20),
                 st.lists(st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)), max_size=3),
                 st.dictionaries(st.text(max_size=6), st.one_of(st.integers(), st.text(max_size=6)), max_size=2))
CLOCK_SAMPLES = ["07:00-13:00", "13:00-07:00", "07:00-07:00", "7-13", "24:00-01:00", "-", "07:00+05:00-13:00"]
clock = st.one_of(st.from_regex(r"\d\d:\d\d-\d\d:\d\d", fullmatch=True), st.sampled_from(CLOCK_SAMPLES), junk)
rule = st.fixed_dictionaries({"kind": st.sampled_from(["work", "call", "home_call", "moonlighting", "ignore"]) | junk},
                             optional={"match": st.one_of(st.dictionaries(st.sampled_from(["role", "activity", "rotation_name", "day_type",
                                                                                           "is_weekend", "bogus"]), junk, max_size=2), junk),
                                       "hours": st.one_of(clock, st.dictionaries(st.sampled_from(["AM", "PM", "night"]), clock, max_size=2)),
                                       "worked": junk, "extra": junk})


@FUZZ
@example(tz="UTC", block_hours=None, rules=[{"kind": "work", "match": {"role": [[1]]}}], date_from=None, date_to=None, schema="public",
         rows=[])  # found by the fuzz run: a list inside match crashed with TypeError (unhashable)
@example(tz="UTC", block_hours=None, rules=[{"kind": "call", "match": {"activity": {"a": 1}}}], date_from=None, date_to=None,
         schema="public", rows=[])
@given(tz=st.one_of(st.sampled_from(["America/New_York", "UTC", "Nowhere/Land", ""]), junk),
       block_hours=st.one_of(st.none(), st.dictionaries(st.sampled_from(["AM", "PM", "am", "night"]), clock, max_size=3), junk),
       rules=st.one_of(st.none(), st.lists(rule, max_size=3), junk), date_from=st.one_of(st.none(), st.dates().map(str), junk),
       date_to=st.one_of(st.none(), st.dates().map(str), junk), schema=st.one_of(st.just("public"), junk),
       rows=st.lists(st.fixed_dictionaries({
           "assignment_id": st.integers(1, 9), "person_id": st.sampled_from(["p1", "f1"]), "block_id": st.integers(),
           "block_date": st.dates(date(2026, 1, 1), date(2026, 12, 31)), "time_of_day": st.one_of(st.sampled_from(["AM", "PM"]), junk),
           "role": junk, "activity_type": junk, "activity_override": junk, "rotation_name": junk}), max_size=4))
def test_mapping_and_assignments_give_shifts_or_a_clear_error(tz, block_hours, rules, date_from, date_to, schema, rows):
    try:
        mapping = PostgresMapping(tz, block_hours, rules, date_from, date_to, schema)
    except ScheduleError as exc:
        assert str(exc)
        return
    shifts = []
    for row in rows:
        try:
            made = assignment_to_shift(row, mapping.rules, mapping.block_hours, mapping.tz)
        except ScheduleError as exc:
            assert "block_hours" in str(exc)
            continue
        if made is not None:
            assert made["start"] < made["end"] and made["kind"] in ("work", "call", "home_call", "moonlighting")
            shifts.append({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in made.items()})
    try:
        check(shifts, [{"id": "p1", "name": "I", "type": "resident", "pgy_level": 1}, {"id": "f1", "name": "F", "type": "faculty"}],
              as_of=AS_OF, timezone="UTC")
    except ScheduleError as exc:
        assert "duplicate" in str(exc)
