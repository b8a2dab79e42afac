"""Property checks: any input gives a result or a ScheduleError (a ValueError), never another exception,
and results keep the invariants every rule relies on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import RULES, ScheduleError, check

BASE = datetime(2026, 10, 20, tzinfo=timezone.utc)  # the windows reach the 2026-11-01 DST change in New York
PEOPLE = [
    {"id": "i", "name": "Intern", "type": "resident", "pgy_level": 1},
    {"id": "r", "name": "Senior", "type": "resident", "pgy_level": 3},
    {"id": "f", "name": "Faculty", "type": "faculty"},
]

valid_shift = st.builds(
    lambda person, start_min, length_min, kind, worked: {
        "person_id": person,
        "start": (BASE + timedelta(minutes=start_min)).isoformat(),
        "end": (BASE + timedelta(minutes=start_min + length_min)).isoformat(),
        "kind": kind,
        **({"worked": worked} if kind == "home_call" and worked is not None else {}),
    },
    st.sampled_from(["i", "r", "f"]),
    st.integers(0, 40 * 24 * 60),
    st.integers(1, 36 * 60),
    st.sampled_from(["work", "call", "home_call", "moonlighting"]),
    st.none() | st.booleans(),
)
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=25), st.floats(allow_nan=True),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
any_shift = st.one_of(
    valid_shift,
    st.dictionaries(st.sampled_from(["person_id", "start", "end", "kind", "worked", "id", "extra"]), junk, max_size=7),
    valid_shift.flatmap(lambda s: st.sampled_from(list(s)).flatmap(lambda key: junk.map(lambda value: {**s, key: value}))),
    junk,
)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(shifts=st.lists(any_shift, max_size=12), tz=st.sampled_from([None, "America/New_York", "UTC", "Nowhere/Land"]),
       rules=st.none() | st.lists(st.sampled_from(RULES + ("bogus",)), max_size=3))
def test_never_an_unexpected_exception(shifts, tz, rules):
    try:
        result = check(shifts, PEOPLE, as_of="2026-11-01T12:00:00+00:00", timezone=tz, rules=rules)
    except ScheduleError as exc:
        assert str(exc)  # a message, naming what was wrong
        return
    assert {v["rule"] for v in result["violations"]} <= set(RULES)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(shifts=st.lists(valid_shift, max_size=30), tz=st.sampled_from(["America/New_York", "UTC"]))
def test_invariants_on_valid_schedules(shifts, tz):
    try:
        result = check(shifts, PEOPLE, as_of="2026-11-01T12:00:00+00:00", timezone=tz)
    except ScheduleError as exc:
        assert "duplicate" in str(exc)  # the only error a valid-shaped schedule can raise
        return
    flagged = {v["person_id"] for v in result["violations"]}
    assert "f" not in flagged  # faculty never
    for violation in result["violations"]:
        assert violation["status"] in ("historical", "future")
        assert violation["start"] <= violation["end"] or violation["rule"] in ("weekly_80h_avg4w", "one_day_off_in_7", "call_q3_avg4w")
        if violation["rule"] == "pgy1_supervision":
            assert violation["person_id"] == "i"
    # hours are merged work: never more than the wall-clock span they cover, never more than the shifts' sum
    for entry in result["hours"]:
        mine = [s for s in shifts if s["person_id"] == entry["person_id"] and (s["kind"] != "home_call" or s.get("worked"))]
        raw = sum((datetime.fromisoformat(s["end"]) - datetime.fromisoformat(s["start"])).total_seconds() for s in mine) / 3600
        assert entry["total_hours"] <= round(raw, 4) + 1e-6
        assert round(sum(w["hours"] for w in entry["weeks"]), 3) == round(entry["total_hours"], 3)
    assert result["summary"]["violations"] == len(result["violations"])
