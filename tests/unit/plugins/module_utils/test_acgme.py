"""ACGME rules, each with hand-computed cases just under and just over its limit."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import RULES, ScheduleError, check

RES = {"id": "r1", "name": "Resident Two", "type": "resident", "pgy_level": 2}
INTERN = {"id": "p1", "name": "Intern One", "type": "resident", "pgy_level": 1}
FAC = {"id": "f1", "name": "Dr. Faculty", "type": "faculty"}
FAR_FUTURE = "2030-01-01T00:00:00+00:00"

# 2026-03-02 is a Monday; a 28-day window from it ends on 2026-03-29 and straddles February/March
# for the windows anchored before it.
MONDAY = date(2026, 3, 2)


def at(day: date, clock: str, offset: str = "+00:00") -> str:
    return f"{day.isoformat()}T{clock}:00{offset}"


def shift(person: str, start: str, end: str, kind: str = "work", **extra) -> dict:
    return {"person_id": person, "start": start, "end": end, "kind": kind, **extra}


def run(shifts, people=(RES,), rules=None, tz=None, as_of=FAR_FUTURE, **kwargs):
    return check(list(shifts), list(people), as_of=as_of, timezone=tz, rules=rules, **kwargs)


def found(result, rule):
    return [v for v in result["violations"] if v["rule"] == rule]


def day_shift(person: str, day: date, start: str = "07:00", end: str = "19:00", kind: str = "work") -> dict:
    end_day = day if end > start else day + timedelta(days=1)
    return shift(person, at(day, start), at(end_day, end), kind)


# -- weekly_80h_avg4w ---------------------------------------------------------------------------


def _weekdays(weeks: int = 4):
    return [MONDAY + timedelta(days=7 * w + d) for w in range(weeks) for d in range(5)]


def test_80h_exactly_at_the_limit_is_compliant():
    # 20 shifts of 16 h in 28 days = 320 h = 80.0 h/week averaged
    result = run([day_shift("r1", d, "06:00", "22:00") for d in _weekdays()], rules=["weekly_80h_avg4w"])
    assert found(result, "weekly_80h_avg4w") == []
    assert result["hours"][0]["max_avg_4w"] == 80.0


def test_80h_one_hour_over_is_one_violation_with_the_worst_window():
    days = _weekdays()
    shifts = [day_shift("r1", d, "06:00", "22:00") for d in days[:-1]] + [day_shift("r1", days[-1], "06:00", "23:00")]
    result = run(shifts, rules=["weekly_80h_avg4w"])
    (violation,) = found(result, "weekly_80h_avg4w")
    assert violation["value"] == 80.25  # 321 h / 4
    assert violation["limit"] == 80
    # the windows holding all 20 shifts start 2026-02-28, 03-01 and 03-02: one run, reported once
    assert violation["start"] == "2026-02-28T00:00:00+00:00"
    assert violation["window"] == {"start": "2026-02-28T00:00:00+00:00", "end": "2026-03-28T00:00:00+00:00"}
    assert violation["end"] == "2026-03-27T23:00:00+00:00"  # end of the last shift in the run's windows
    assert "3 overlapping window(s)" in violation["detail"]
    assert violation["shift_ids"] == list(range(20))
    assert violation["status"] == "historical"


def test_80h_status_future_when_the_last_shift_is_not_over():
    days = _weekdays()
    shifts = [day_shift("r1", d, "06:00", "22:00") for d in days[:-1]] + [day_shift("r1", days[-1], "06:00", "23:00")]
    (violation,) = found(run(shifts, rules=["weekly_80h_avg4w"], as_of="2026-03-27T22:59:59+00:00"), "weekly_80h_avg4w")
    assert violation["status"] == "future"
    (violation,) = found(run(shifts, rules=["weekly_80h_avg4w"], as_of="2026-03-27T23:00:00+00:00"), "weekly_80h_avg4w")
    assert violation["status"] == "historical"  # ending exactly at as_of is over


def test_80h_two_separate_runs_are_two_violations():
    first = [day_shift("r1", d, "06:00", "23:00") for d in _weekdays()]
    later = [day_shift("r1", d + timedelta(days=70), "06:00", "23:00") for d in _weekdays()]
    violations = found(run(first + later, rules=["weekly_80h_avg4w"]), "weekly_80h_avg4w")
    assert len(violations) == 2
    assert [v["value"] for v in violations] == [85.0, 85.0]  # 20 x 17 h / 4


def test_moonlighting_and_worked_home_call_count_unworked_home_call_does_not():
    days = _weekdays()
    shifts = [day_shift("r1", d, "06:00", "22:00") for d in days]  # 320 h
    extra_unworked = shift("r1", at(days[0], "22:00"), at(days[0], "23:00"), "home_call")
    assert found(run(shifts + [extra_unworked], rules=["weekly_80h_avg4w"]), "weekly_80h_avg4w") == []
    extra_worked = shift("r1", at(days[0], "22:00"), at(days[0], "23:00"), "home_call", worked=True)
    assert found(run(shifts + [extra_worked], rules=["weekly_80h_avg4w"]), "weekly_80h_avg4w")[0]["value"] == 80.25
    moonlighting = shift("r1", at(days[0] + timedelta(days=5), "08:00"), at(days[0] + timedelta(days=5), "09:00"), "moonlighting")
    assert found(run(shifts + [moonlighting], rules=["weekly_80h_avg4w"]), "weekly_80h_avg4w")[0]["value"] == 80.25


# -- hours and DST ------------------------------------------------------------------------------


@pytest.mark.parametrize("day, expected", [("2026-03-08", 23.0), ("2026-11-01", 25.0), ("2026-03-09", 24.0)])
def test_a_local_day_lasts_23_or_25_real_hours_on_dst_changes(day, expected):
    nxt = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    result = run([shift("r1", f"{day}T00:00:00", f"{nxt}T00:00:00")], tz="America/New_York", rules=["continuous_24h_plus4"])
    assert result["hours"][0]["total_hours"] == expected
    assert result["hours"][0]["weeks"][0]["hours"] == expected


def test_hours_split_at_the_iso_week_boundary_in_the_program_timezone():
    # Sunday 20:00 to Monday 08:00 New York time: 4 h in W10, 8 h in W11
    result = run([shift("r1", "2026-03-08T20:00:00-04:00", "2026-03-09T08:00:00-04:00")], tz="America/New_York")
    weeks = result["hours"][0]["weeks"]
    assert [(w["week"], w["hours"]) for w in weeks] == [("2026-W10", 4.0), ("2026-W11", 8.0)]
    assert weeks[1]["avg_4w"] == 3.0  # (4 + 8) / 4
    # the same instants in UTC are all on Monday 2026-03-09 (00:00 to 12:00 UTC)
    result = run([shift("r1", "2026-03-08T20:00:00-04:00", "2026-03-09T08:00:00-04:00")])
    assert [(w["week"], w["hours"]) for w in result["hours"][0]["weeks"]] == [("2026-W11", 12.0)]


def test_iso_week_label_across_the_new_year():
    result = run([shift("r1", "2027-01-01T08:00:00Z", "2027-01-01T18:00:00Z")])
    assert result["hours"][0]["weeks"][0]["week"] == "2026-W53"
    assert result["hours"][0]["weeks"][0]["start"] == "2026-12-28"


# -- one_day_off_in_7 ---------------------------------------------------------------------------


def _consecutive(count: int, first: date = MONDAY, start: str = "07:00", end: str = "19:00"):
    return [day_shift("r1", first + timedelta(days=i), start, end) for i in range(count)]


def test_four_free_days_in_28_is_compliant():
    assert found(run(_consecutive(24), rules=["one_day_off_in_7"]), "one_day_off_in_7") == []


def test_three_free_days_in_28_is_one_violation():
    result = run(_consecutive(25), rules=["one_day_off_in_7"])
    (violation,) = found(result, "one_day_off_in_7")
    assert violation["value"] == 3
    assert violation["limit"] == 4
    # windows anchored 02-27 .. 03-02 hold all 25 worked days: 4 windows, one violation
    assert violation["start"] == "2026-02-27T00:00:00+00:00"
    assert violation["window"]["start"] == "2026-02-27T00:00:00+00:00"
    assert "4 overlapping window(s)" in violation["detail"]
    assert violation["end"] == at(MONDAY + timedelta(days=24), "19:00")


def test_overnight_shifts_take_both_calendar_days():
    # 24 nights 22:00-06:00 touch 25 calendar days: 3 free days; 24 day shifts leave 4
    nights = _consecutive(24, start="22:00", end="06:00")
    assert found(run(nights, rules=["one_day_off_in_7"]), "one_day_off_in_7")[0]["value"] == 3


def test_home_call_on_a_day_makes_it_not_free_even_unworked():
    home = shift("r1", at(MONDAY + timedelta(days=24), "17:00"), at(MONDAY + timedelta(days=24), "23:00"), "home_call")
    result = run(_consecutive(24) + [home], rules=["one_day_off_in_7", "weekly_80h_avg4w"])
    assert found(result, "one_day_off_in_7")[0]["value"] == 3
    assert result["hours"][0]["total_hours"] == 24 * 12  # the home call adds no hours


def test_day_off_uses_local_calendar_days_across_dst():
    # New York, 25 days from 2026-03-01 (DST starts 03-08): 3 free days; windows start at local midnight
    shifts = [shift("r1", f"{(date(2026, 3, 1) + timedelta(days=i)).isoformat()}T07:00:00",
                    f"{(date(2026, 3, 1) + timedelta(days=i)).isoformat()}T19:00:00") for i in range(25)]
    (violation,) = found(run(shifts, rules=["one_day_off_in_7"], tz="America/New_York"), "one_day_off_in_7")
    assert violation["value"] == 3
    assert violation["start"] == "2026-02-26T00:00:00-05:00"
    assert violation["window"] == {"start": "2026-02-26T00:00:00-05:00", "end": "2026-03-26T00:00:00-04:00"}


# -- continuous_24h_plus4 -----------------------------------------------------------------------


def test_28h_continuous_is_compliant_28h01_is_not():
    exactly = [shift("r1", "2026-03-02T07:00:00Z", "2026-03-03T11:00:00Z", "call")]
    assert found(run(exactly, rules=["continuous_24h_plus4"]), "continuous_24h_plus4") == []
    over = [shift("r1", "2026-03-02T07:00:00Z", "2026-03-03T11:01:00Z", "call")]
    (violation,) = found(run(over, rules=["continuous_24h_plus4"]), "continuous_24h_plus4")
    assert violation["value"] == 28.0167
    assert violation["limit"] == 28
    assert "28 h 01 min" in violation["detail"]


def test_touching_shifts_are_one_continuous_period():
    shifts = [
        shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z", "work"),
        shift("r1", "2026-03-02T19:00:00Z", "2026-03-03T07:00:00Z", "call"),
        shift("r1", "2026-03-03T07:00:00Z", "2026-03-03T11:01:00Z", "work"),
    ]
    (violation,) = found(run(shifts, rules=["continuous_24h_plus4"]), "continuous_24h_plus4")
    assert violation["shift_ids"] == [0, 1, 2]
    assert violation["start"] == "2026-03-02T07:00:00+00:00"
    assert violation["end"] == "2026-03-03T11:01:00+00:00"


def test_overlapping_shifts_merge_count_once_and_warn():
    shifts = [
        shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T20:00:00Z", "work"),
        shift("r1", "2026-03-02T19:00:00Z", "2026-03-03T11:01:00Z", "call"),
    ]
    result = run(shifts, rules=["continuous_24h_plus4"])
    assert found(result, "continuous_24h_plus4")[0]["value"] == 28.0167
    assert result["hours"][0]["total_hours"] == 28.0167  # not 29.0167: the overlap hour once
    assert len(result["warnings"]) == 1 and "shifts[0] and shifts[1]" in result["warnings"][0]


def test_a_one_minute_gap_breaks_continuity():
    shifts = [
        shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z"),
        shift("r1", "2026-03-02T19:01:00Z", "2026-03-03T11:01:00Z", "call"),
    ]
    result = run(shifts, rules=["continuous_24h_plus4", "rest_8h_between_shifts"])
    assert found(result, "continuous_24h_plus4") == []
    assert found(result, "rest_8h_between_shifts")[0]["value"] == 0.0167


def test_continuity_uses_real_elapsed_time_across_dst():
    # spring forward: 07:00 -> 12:00 next day reads 29 h on the clock but lasts 28 h
    spring = [shift("r1", "2026-03-07T07:00:00", "2026-03-08T12:00:00", "call")]
    assert found(run(spring, tz="America/New_York", rules=["continuous_24h_plus4"]), "continuous_24h_plus4") == []
    # fall back: 07:00 -> 10:01 next day reads 27 h 01 min but lasts 28 h 01 min
    autumn = [shift("r1", "2026-10-31T07:00:00", "2026-11-01T10:01:00", "call")]
    (violation,) = found(run(autumn, tz="America/New_York", rules=["continuous_24h_plus4"]), "continuous_24h_plus4")
    assert violation["value"] == 28.0167
    assert violation["start"] == "2026-10-31T07:00:00-04:00" and violation["end"] == "2026-11-01T10:01:00-05:00"


# -- rest_14h_after_24h_call and rest_8h_between_shifts ----------------------------------------


CALL_24H = shift("r1", "2026-03-02T07:00:00Z", "2026-03-03T07:00:00Z", "call")


def test_14h_after_24h_is_compliant_13h59_is_not():
    ok = run([CALL_24H, shift("r1", "2026-03-03T21:00:00Z", "2026-03-04T07:00:00Z")], rules=["rest_14h_after_24h_call"])
    assert found(ok, "rest_14h_after_24h_call") == []
    short = run([CALL_24H, shift("r1", "2026-03-03T20:59:00Z", "2026-03-04T07:00:00Z")], rules=["rest_14h_after_24h_call"])
    (violation,) = found(short, "rest_14h_after_24h_call")
    assert violation["value"] == 13.9833
    assert violation["limit"] == 14
    assert (violation["start"], violation["end"]) == ("2026-03-03T07:00:00+00:00", "2026-03-03T20:59:00+00:00")
    assert violation["shift_ids"] == [0, 1]


def test_14h_rule_needs_a_period_of_24h():
    under = shift("r1", "2026-03-02T07:01:00Z", "2026-03-03T07:00:00Z", "call")  # 23 h 59 min
    result = run([under, shift("r1", "2026-03-03T16:00:00Z", "2026-03-03T20:00:00Z")], rules=["rest_14h_after_24h_call"])
    assert found(result, "rest_14h_after_24h_call") == []


def test_short_rest_after_24h_is_one_violation_when_both_rest_rules_run():
    shifts = [CALL_24H, shift("r1", "2026-03-03T12:00:00Z", "2026-03-03T18:00:00Z")]  # 5 h later
    both = run(shifts, rules=["rest_14h_after_24h_call", "rest_8h_between_shifts"])
    assert [v["rule"] for v in both["violations"]] == ["rest_14h_after_24h_call"]
    only_8h = run(shifts, rules=["rest_8h_between_shifts"])
    assert [(v["rule"], v["value"]) for v in only_8h["violations"]] == [("rest_8h_between_shifts", 5.0)]


def test_14h_rule_across_dst_uses_real_hours():
    # spring: 07:00-07:00 is 23 h, not a 24 h period; autumn: 25 h, and 07:00 -> 20:00 is 13 h of rest
    spring = [shift("r1", "2026-03-07T07:00:00", "2026-03-08T07:00:00", "call"), shift("r1", "2026-03-08T20:00:00", "2026-03-08T23:00:00")]
    assert found(run(spring, tz="America/New_York", rules=["rest_14h_after_24h_call"]), "rest_14h_after_24h_call") == []
    autumn = [shift("r1", "2026-10-31T07:00:00", "2026-11-01T07:00:00", "call"), shift("r1", "2026-11-01T20:00:00", "2026-11-01T23:00:00")]
    (violation,) = found(run(autumn, tz="America/New_York", rules=["rest_14h_after_24h_call"]), "rest_14h_after_24h_call")
    assert violation["value"] == 13.0
    assert "25 h 00 min period" in violation["detail"]


def test_8h_rest_is_compliant_7h59_is_not():
    day = shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z")
    ok = run([day, shift("r1", "2026-03-03T03:00:00Z", "2026-03-03T07:00:00Z")], rules=["rest_8h_between_shifts"])
    assert ok["violations"] == []
    short = run([day, shift("r1", "2026-03-03T02:59:00Z", "2026-03-03T07:00:00Z")], rules=["rest_8h_between_shifts"])
    (violation,) = short["violations"]
    assert (violation["rule"], violation["value"], violation["limit"]) == ("rest_8h_between_shifts", 7.9833, 8)


def test_rest_counts_moonlighting_as_work():
    day = shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T17:00:00Z")
    moon = shift("r1", "2026-03-02T20:00:00Z", "2026-03-02T23:00:00Z", "moonlighting")
    assert found(run([day, moon], rules=["rest_8h_between_shifts"]), "rest_8h_between_shifts")[0]["value"] == 3.0


# -- call_q3_avg4w ------------------------------------------------------------------------------


def _calls(days):
    return [day_shift("r1", MONDAY + timedelta(days=d), "19:00", "07:00", "call") for d in days]


def test_nine_calls_in_28_days_is_compliant_ten_is_not():
    assert found(run(_calls(range(0, 27, 3)), rules=["call_q3_avg4w"]), "call_q3_avg4w") == []  # days 0,3,..,24
    result = run(_calls(list(range(0, 27, 3)) + [27]), rules=["call_q3_avg4w"])
    (violation,) = found(result, "call_q3_avg4w")
    assert (violation["value"], violation["limit"]) == (10, 9)
    assert violation["window"] == {"start": "2026-03-02T00:00:00+00:00", "end": "2026-03-30T00:00:00+00:00"}
    assert violation["end"] == "2026-03-30T07:00:00+00:00"  # the last call's end
    assert len(violation["shift_ids"]) == 10


def test_touching_call_shifts_are_one_call_period():
    extra = shift("r1", at(MONDAY + timedelta(days=1), "07:00"), at(MONDAY + timedelta(days=1), "09:00"), "call")
    assert found(run(_calls(range(0, 27, 3)) + [extra], rules=["call_q3_avg4w"]), "call_q3_avg4w") == []


def test_home_call_is_not_in_house_call():
    home = day_shift("r1", MONDAY + timedelta(days=27), "19:00", "07:00", "home_call")
    assert found(run(_calls(range(0, 27, 3)) + [home], rules=["call_q3_avg4w"]), "call_q3_avg4w") == []


# -- pgy1_supervision ---------------------------------------------------------------------------


def test_intern_covered_by_faculty_is_compliant():
    shifts = [shift("p1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z"), shift("f1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z")]
    assert run(shifts, people=[INTERN, FAC])["violations"] == []


def test_intern_one_minute_uncovered():
    shifts = [shift("p1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z"), shift("f1", "2026-03-02T07:00:00Z", "2026-03-02T18:59:00Z")]
    (violation,) = run(shifts, people=[INTERN, FAC])["violations"]
    assert violation["rule"] == "pgy1_supervision"
    assert (violation["start"], violation["end"], violation["value"]) == ("2026-03-02T18:59:00+00:00", "2026-03-02T19:00:00+00:00", 0.0167)


def test_two_faculty_touching_cover_together_and_home_call_does_not_cover():
    fac2 = {"id": "f2", "name": "Dr. Two", "type": "faculty"}
    shifts = [
        shift("p1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z"),
        shift("f1", "2026-03-02T06:00:00Z", "2026-03-02T13:00:00Z"),
        shift("f2", "2026-03-02T13:00:00Z", "2026-03-02T20:00:00Z"),
    ]
    assert run(shifts, people=[INTERN, FAC, fac2])["violations"] == []
    shifts[2]["kind"] = "home_call"
    (violation,) = run(shifts, people=[INTERN, FAC, fac2])["violations"]
    assert (violation["start"], violation["value"]) == ("2026-03-02T13:00:00+00:00", 6.0)


def test_only_pgy1_needs_supervision():
    shifts = [shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z")]
    assert run(shifts, people=[RES, FAC])["violations"] == []


# -- who is flagged ---------------------------------------------------------------------------


def test_faculty_are_never_flagged():
    brutal = [day_shift("f1", MONDAY + timedelta(days=i), "00:00", "23:30", "call") for i in range(28)]
    brutal.append(shift("f1", at(MONDAY + timedelta(days=28), "00:00"), at(MONDAY + timedelta(days=30), "00:00"), "call"))
    result = run(brutal, people=[FAC, INTERN])
    assert result["violations"] == []
    assert result["hours"][0]["max_avg_4w"] > 80  # the hours are there, the rules just do not apply


def test_empty_schedule_and_people_without_shifts():
    result = run([], people=[])
    assert result["violations"] == [] and result["hours"] == [] and result["approaching"] == []
    assert result["summary"]["compliant"] is True and result["summary"]["shifts"] == 0
    result = run([shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z")], people=[RES, INTERN, FAC])
    idle = [h for h in result["hours"] if h["person_id"] == "p1"][0]
    assert idle["total_hours"] == 0.0 and idle["weeks"] == []
    assert result["summary"]["residents"] == 2 and result["summary"]["faculty"] == 1


def test_person_ids_are_compared_as_text():
    result = run([shift(1, "2026-03-02T07:00:00Z", "2026-03-03T12:00:00Z", "call")],
                 people=[{"id": "1", "name": "A", "type": "resident", "pgy_level": 2}], rules=["continuous_24h_plus4"])
    assert result["violations"][0]["person_id"] == "1"


def test_rules_subset_and_summary_counts():
    shifts = [CALL_24H, shift("r1", "2026-03-03T12:00:00Z", "2026-03-04T12:00:00Z", "call")]
    result = run(shifts, rules=["rest_14h_after_24h_call", "continuous_24h_plus4"])
    assert result["summary"]["rules"] == ["continuous_24h_plus4", "rest_14h_after_24h_call"]
    assert result["summary"]["by_rule"] == {"continuous_24h_plus4": 0, "rest_14h_after_24h_call": 1}
    assert result["summary"]["by_person"] == [{"person_id": "r1", "name": "Resident Two", "count": 1, "rules": ["rest_14h_after_24h_call"]}]


# -- approaching --------------------------------------------------------------------------------


def _week(hours_per_day, days=6):
    return [shift("r1", at(MONDAY + timedelta(days=d), "06:00"), (datetime.fromisoformat(at(MONDAY + timedelta(days=d), "06:00"))
                  + timedelta(hours=hours_per_day)).isoformat()) for d in range(days)]


def test_approaching_counts_worked_and_scheduled_hours_of_the_current_week():
    shifts = _week(12.5) + [shift("f1", "2026-03-02T06:00:00Z", "2026-03-09T06:00:00Z")]  # 75 h; faculty 168 h
    result = run(shifts, people=[RES, FAC], as_of="2026-03-04T12:00:00Z")
    (entry,) = result["approaching"]
    assert entry["person_id"] == "r1" and entry["week"] == "2026-W10"
    assert (entry["hours"], entry["worked_hours"], entry["scheduled_hours"]) == (75.0, 31.0, 44.0)  # Mon, Tue, Wed 06:00-12:00 worked
    assert entry["upcoming_shift_ids"] == [2, 3, 4, 5]


def test_approaching_threshold_just_under_and_configurable():
    shifts = _week(12.49)
    assert run(shifts, as_of="2026-03-04T12:00:00Z")["approaching"] == []
    assert len(run(shifts, as_of="2026-03-04T12:00:00Z", weekly_hours_warning=70)["approaching"]) == 1
    assert run(shifts, as_of="2026-03-10T12:00:00Z")["approaching"] == []  # the next week is empty


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shifts, people, tz, message", [
    ([shift("r1", "2026-03-02T19:00:00Z", "2026-03-02T07:00:00Z")], [RES], None, "shifts[0].end: 2026-03-02T07:00:00Z is not after start"),
    ([shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T07:00:00Z")], [RES], None, "shifts[0].end"),
    ([shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T08:00:00Z"), shift("zz", "2026-03-02T07:00:00Z", "2026-03-02T08:00:00Z")], [RES], None,
     "shifts[1].person_id: unknown person 'zz'"),
    ([shift("r1", "2026-03-02T07:00:00", "2026-03-02T19:00:00Z")], [RES], None, "shifts[0].start: '2026-03-02T07:00:00' has no UTC offset"),
    ([shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z", "nap")], [RES], None, "shifts[0].kind: expected one of work, call"),
    ([shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z")] * 2, [RES], None, "shifts[1]: duplicate of shifts[0]"),
    ([shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z", worked=False)], [RES], None, "shifts[0].worked: only home_call"),
    ([shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z", worked="yes")], [RES], None, "shifts[0].worked: expected true or false"),
    ([shift("r1", "2026-03-02", "2026-03-02T19:00:00Z")], [RES], None, "shifts[0].start: '2026-03-02' is a date without a time"),
    ([shift("r1", "yesterday", "2026-03-02T19:00:00Z")], [RES], None, "shifts[0].start: 'yesterday' is not an ISO 8601"),
    ([shift("r1", 1700000000, "2026-03-02T19:00:00Z")], [RES], None, "shifts[0].start: expected an ISO 8601"),
    ([{"person_id": "r1", "start": "2026-03-02T07:00:00Z", "end": "2026-03-02T19:00:00Z"}], [RES], None, "shifts[0].kind: missing"),
    ([{**shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z"), "wrked": True}], [RES], None, "shifts[0]: unknown field(s) wrked"),
    (["nope"], [RES], None, "shifts[0]: expected a mapping"),
    ([], [{"id": "r1", "type": "resident"}], None, "people[0].pgy_level: a resident needs a PGY level"),
    ([], [RES, RES], None, "people[1].id: 'r1' appears twice"),
    ([], [{"id": "x", "type": "nurse"}], None, "people[0].type: expected resident or faculty"),
    ([], [RES], "Mars/Olympus", "timezone: unknown time zone 'Mars/Olympus'"),
])
def test_bad_input_names_the_field(shifts, people, tz, message):
    with pytest.raises(ScheduleError) as error:
        run(shifts, people=people, tz=tz)
    assert message in str(error.value)


def test_bad_options():
    with pytest.raises(ScheduleError, match="rules: unknown rule"):
        run([], rules=["weekly_90h"])
    with pytest.raises(ScheduleError, match="weekly_hours_warning"):
        run([], weekly_hours_warning=0)
    with pytest.raises(ScheduleError, match="as_of: 'soon' is not an ISO 8601"):
        run([], as_of="soon")
    with pytest.raises(ScheduleError, match="as_of: '2026-03-02T07:00:00' has no UTC offset"):
        run([], as_of="2026-03-02T07:00:00")


def test_naive_times_are_read_in_the_given_timezone():
    result = run([shift("r1", "2026-03-02T07:00:00", "2026-03-02T19:00:00")], tz="America/New_York")
    assert result["summary"]["first_day"] == "2026-03-02" and result["hours"][0]["total_hours"] == 12.0
    assert result["summary"]["timezone"] == "America/New_York"


def test_same_times_different_kinds_are_overlaps_not_duplicates():
    shifts = [shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z"), shift("r1", "2026-03-02T07:00:00Z", "2026-03-02T19:00:00Z", "moonlighting")]
    result = run(shifts)
    assert result["hours"][0]["total_hours"] == 12.0 and len(result["warnings"]) == 1


def test_every_rule_name_is_the_contract():
    assert RULES == ("weekly_80h_avg4w", "one_day_off_in_7", "continuous_24h_plus4", "rest_14h_after_24h_call",
                     "rest_8h_between_shifts", "call_q3_avg4w", "pgy1_supervision")
