"""How scheduler assignments (half-day blocks) become shifts, without a database."""

from __future__ import annotations

from datetime import date

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import PostgresMapping, ScheduleError, assignment_to_shift, check


def row(**fields):
    base = {"assignment_id": 11, "person_id": 3, "block_id": 5, "block_date": date(2026, 3, 7), "time_of_day": "PM", "role": "primary",
            "activity_override": None, "activity_type": "inpatient", "rotation_name": "Inpatient Medicine", "rotation_abbreviation": "IM",
            "day_type": "weekend", "is_weekend": True, "is_holiday": False}
    base.update(fields)
    return base


def to_shift(mapping: PostgresMapping, **fields):
    return assignment_to_shift(row(**fields), mapping.rules, mapping.block_hours, mapping.tz)


def test_default_block_hours_are_6h_half_days_in_the_program_timezone():
    mapping = PostgresMapping("America/New_York")
    am = to_shift(mapping, time_of_day="AM")
    pm = to_shift(mapping)
    assert (am["start"].isoformat(), am["end"].isoformat()) == ("2026-03-07T07:00:00-05:00", "2026-03-07T13:00:00-05:00")
    assert (pm["start"].isoformat(), pm["end"].isoformat(), pm["kind"], pm["id"]) == (
        "2026-03-07T13:00:00-05:00", "2026-03-07T19:00:00-05:00", "work", 11)


def test_default_call_rule_runs_the_pm_call_overnight_across_dst():
    mapping = PostgresMapping("America/New_York")
    call = to_shift(mapping, activity_override="Call")  # case-insensitive; the override wins over the rotation's activity type
    assert call["kind"] == "call"
    assert (call["start"].isoformat(), call["end"].isoformat()) == ("2026-03-07T13:00:00-05:00", "2026-03-08T07:00:00-04:00")
    # with the AM block that is one 07:00-07:00 period: 23 h of real time on the night the clocks go forward
    am = to_shift(mapping, time_of_day="AM", assignment_id=10)
    result = check([am, call], [{"id": 3, "name": "R", "type": "resident", "pgy_level": 2}], timezone="America/New_York",
                   as_of="2026-04-01T00:00:00Z")
    assert result["hours"][0]["total_hours"] == 23.0


def test_first_matching_rule_wins_and_ignore_drops_the_assignment():
    mapping = PostgresMapping("UTC", assignment_rules=[
        {"match": {"role": "backup", "is_weekend": True}, "kind": "home_call", "worked": True},
        {"match": {"rotation_abbreviation": ["NF", "im"]}, "kind": "work", "hours": "19:00-07:00"},
        {"match": {"activity": "leave"}, "kind": "ignore"},
    ], block_hours={"am": "08:00-12:00", "PM": "12:00-17:00"})
    home = to_shift(mapping, role="backup")
    assert (home["kind"], home["worked"]) == ("home_call", True)
    night = to_shift(mapping)
    assert (night["start"].isoformat(), night["end"].isoformat()) == ("2026-03-07T19:00:00+00:00", "2026-03-08T07:00:00+00:00")
    assert to_shift(mapping, activity_type="leave", rotation_abbreviation="LV") is None
    plain = to_shift(mapping, rotation_abbreviation="CLN", time_of_day="AM")
    assert (plain["kind"], plain["start"].isoformat()) == ("work", "2026-03-07T08:00:00+00:00")


def test_missing_columns_read_as_null_and_never_match():
    mapping = PostgresMapping("UTC", assignment_rules=[{"match": {"activity_override": None}, "kind": "moonlighting"}])
    assert to_shift(mapping, activity_override=None)["kind"] == "moonlighting"
    assert to_shift(mapping, activity_override="x")["kind"] == "work"


def test_unknown_time_of_day_is_an_error_naming_the_block():
    with pytest.raises(ScheduleError, match="block_hours: no clock hours for time_of_day 'EVE' .block 5, assignment 11"):
        to_shift(PostgresMapping("UTC"), time_of_day="EVE")


@pytest.mark.parametrize("kwargs, message", [
    ({"tz_name": None}, "timezone: required with source=postgres"),
    ({"block_hours": {"AM": "7-13"}}, "block_hours.AM: '7' is not a clock time"),
    ({"block_hours": {"AM": "07:00"}}, "block_hours.AM: expected clock hours such as 07:00-13:00"),
    ({"assignment_rules": [{"match": {"colour": "red"}, "kind": "work"}]}, "assignment_rules[0].match.colour: unknown field"),
    ({"assignment_rules": [{"match": {}, "kind": "nap"}]}, "assignment_rules[0].kind: expected one of"),
    ({"assignment_rules": [{"kind": "work", "when": 1}]}, "assignment_rules[0]: unknown key(s) when"),
    ({"assignment_rules": [{"kind": "call", "hours": {"PM": "19:00"}}]}, "assignment_rules[0].hours.PM"),
    ({"date_from": "2026-13-01"}, "date_from: expected a date"),
    ({"date_from": "2026-03-02", "date_to": "2026-03-01"}, "date_to: 2026-03-01 is before date_from 2026-03-02"),
])
def test_bad_mapping_options(kwargs, message):
    args = {"tz_name": "UTC", **kwargs}
    with pytest.raises(ScheduleError) as error:
        PostgresMapping(**args)
    assert message in str(error.value)
