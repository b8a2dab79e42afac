# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ACGME duty-hour and supervision checks on a schedule (Common Program Requirements VI.F).

Plain Python: ``check(shifts, people, ...)`` takes shift and person dicts and returns the violations,
hours per ISO week, the residents approaching the weekly warning threshold and a summary.
``load_postgres(conn, ...)`` reads the Residency Scheduler's schema (people, blocks, assignments,
rotation_templates) into those shift and person dicts. Every decision the rules need is written
down here and in docs/modules/acgme_compliance.md; nothing is guessed from the data.

Clocks and calendars
--------------------
* Durations are real elapsed time: instants are converted to UTC and subtracted, so a call from
  07:00 to 07:00 across the spring DST change in America/New_York lasts 23 h, across the autumn one
  25 h.
* Calendar days and ISO weeks are those of the program ``timezone`` (an IANA name; UTC when none is
  given). A day runs from its local midnight to the next one (23 or 25 h long on DST change days).
* Times without a UTC offset are read in ``timezone``; without a ``timezone`` they are an error.

What counts
-----------
* ``work``, ``call`` (in-house) and ``moonlighting`` shifts count as work. ``home_call`` counts only
  when the shift says ``worked: true`` (then its whole start-end is work: enter a call-in as its own
  ``home_call`` shift with ``worked: true`` and the real times). ``worked`` is only allowed on
  ``home_call`` shifts (``worked: true`` elsewhere is accepted and changes nothing).
* A person's work shifts are merged into continuous work periods: shifts that overlap or touch (one
  ends exactly when the next starts) are one period; hours are those of the periods, so an overlap
  is counted once (and reported in ``warnings``). Identical duplicate shifts (same person, start, end,
  kind) are an error: they are a data problem, not a schedule.
* Every rule is a resident rule: faculty are never flagged. Faculty work and in-house call shifts are
  the supervision coverage for PGY-1 residents.

Rolling windows (weekly_80h_avg4w, one_day_off_in_7, call_q3_avg4w)
-------------------------------------------------------------------
A window is 28 calendar days starting at local midnight of any day (every day is an anchor, so no
window is skipped). Days outside the data count as no work and free: the engine never invents hours,
which means a window cut by the start or the end of the data can only under-report; give it 27 days
of history before the period of interest. Consecutive anchors whose windows all break a rule are one
violation (one per maximal run): ``value`` is the worst window's, ``window`` its start and end,
``start`` the start of the run's first window and ``end`` the end of the last counted work (or call)
inside the run's windows, the moment after which no window of the run can change any more.

Status
------
``historical`` when the violation's ``end`` is at or before ``as_of`` (nothing left to change),
otherwise ``future`` (still preventable: at least part of it is scheduled after ``as_of``).
"""

from __future__ import annotations

import bisect
import time
from itertools import accumulate
from datetime import date, datetime, time as dtime, timedelta, timezone as dt_timezone
from typing import Any, Callable

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # Python < 3.9 is not supported by the collection; keeps the import error readable
    ZoneInfo = None
    ZoneInfoNotFoundError = Exception

RULES = (
    "weekly_80h_avg4w",
    "one_day_off_in_7",
    "continuous_24h_plus4",
    "rest_14h_after_24h_call",
    "rest_8h_between_shifts",
    "call_q3_avg4w",
    "pgy1_supervision",
)
KINDS = ("work", "call", "home_call", "moonlighting")
PERSON_TYPES = ("resident", "faculty")
SHIFT_KEYS = ("person_id", "start", "end", "kind", "worked", "id")
_SHIFT_KEYSET = frozenset(SHIFT_KEYS)
_REQUIRED_SHIFT_KEYS = ("person_id", "start", "end", "kind")
PERSON_KEYS = ("id", "name", "type", "pgy_level")

US_PER_HOUR = 3_600_000_000
WINDOW_DAYS = 28
# Limits, in the units the rules compare (microseconds for durations).
WEEKLY_HOURS_LIMIT = 80
WINDOW_HOURS_LIMIT_US = WEEKLY_HOURS_LIMIT * 4 * US_PER_HOUR  # 320 h in 28 days = 80 h/week averaged over 4
MIN_FREE_DAYS = 4  # one day in seven, averaged over four weeks
CONTINUOUS_LIMIT_US = 28 * US_PER_HOUR  # 24 h + 4 h for transitions of care
LONG_PERIOD_US = 24 * US_PER_HOUR
REST_AFTER_LONG_US = 14 * US_PER_HOUR
REST_BETWEEN_US = 8 * US_PER_HOUR
MAX_CALLS_IN_WINDOW = 9  # every third night over 28 days: 28 / 3 = 9.33
SUPERVISION_COVER_KINDS = ("work", "call")  # faculty present in the hospital
SUPERVISED_KINDS = ("work", "call")  # a PGY-1's program work (moonlighting is outside the program; home call is not on site)

# The clock of ``check(timings=...)``; the benchmark uses CPU time (time.process_time) on a busy machine.
TIMER: Callable[[], float] = time.perf_counter
_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_ONE_US = timedelta(microseconds=1)


class ScheduleError(ValueError):
    """Bad input, with a message naming the field (``shifts[3].end``) and what is wrong with it."""


# -- time ---------------------------------------------------------------------------------------


def load_timezone(name: str | None):
    """The program time zone (``None`` → UTC); an unknown name is an error."""
    if name is None or name == "":
        return None
    if ZoneInfo is None:
        raise ScheduleError("timezone: needs Python 3.9 or later (zoneinfo)")
    if not isinstance(name, str):
        raise ScheduleError(f"timezone: expected an IANA time zone name such as America/New_York, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"timezone: unknown time zone {name!r} (expected an IANA name such as America/New_York or UTC)") from None


def parse_instant(value: Any, field: str, tz) -> int:
    """An ISO 8601 string or a datetime → microseconds since the epoch. Naive values need ``tz``."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ScheduleError(f"{field}: {value!r} is not an ISO 8601 date and time (e.g. 2026-03-08T07:00:00-05:00)") from None
        if len(text) <= 10:  # a bare date is not a moment
            raise ScheduleError(f"{field}: {value!r} is a date without a time; give a date and time such as {text}T07:00:00")
    else:
        raise ScheduleError(f"{field}: expected an ISO 8601 date and time string, got {type(value).__name__} {value!r}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        if tz is None:
            raise ScheduleError(f"{field}: {value!r} has no UTC offset; add one (e.g. -05:00 or Z) or set the program timezone option")
        parsed = parsed.replace(tzinfo=tz)
    delta = parsed - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def resolve_as_of(value: Any, tz, now: float | None = None) -> int:
    """``as_of``: ``None``/``now`` → the current time, else an ISO 8601 date and time (naive needs ``tz``)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "now"):
        return int((time.time() if now is None else now) * 1_000_000)
    return parse_instant(value, "as_of", tz)


class Calendar:
    """Local calendar of the program time zone: day numbers, midnights as instants, ISO weeks."""

    def __init__(self, tz):
        self.tz = tz or dt_timezone.utc
        self._starts: dict[int, int] = {}
        self._grid_first = 0
        self._grid: list[int] = []

    def prepare(self, first: int, last: int) -> None:
        """Precompute the midnights of days ``first``..``last`` so ``day_of`` is a bisection there."""
        self._grid_first = first
        self._grid = [self.day_start(ordinal) for ordinal in range(first, last + 2)]

    def date_of(self, instant_us: int) -> date:
        return (_EPOCH + timedelta(microseconds=instant_us)).astimezone(self.tz).date()

    def day_of(self, instant_us: int) -> int:
        """Day number (proleptic ordinal) of the local calendar day containing the instant."""
        grid = self._grid
        if grid and grid[0] <= instant_us < grid[-1]:
            return self._grid_first + bisect.bisect_right(grid, instant_us) - 1
        return self.date_of(instant_us).toordinal()

    def day_start(self, ordinal: int) -> int:
        """The instant the local day begins. A non-existent midnight (DST gap) resolves to the first
        instant of the day, as Python's fold=0 maps it past the gap."""
        start = self._starts.get(ordinal)
        if start is None:
            local = datetime.combine(date.fromordinal(ordinal), dtime(0, 0), tzinfo=self.tz)
            start = (local - _EPOCH) // _ONE_US
            self._starts[ordinal] = start
        return start

    def iso(self, instant_us: int) -> str:
        return (_EPOCH + timedelta(microseconds=instant_us)).astimezone(self.tz).isoformat()


def hours(us: int) -> float:
    return round(us / US_PER_HOUR, 4)


def hm(us: int) -> str:
    """A duration as ``28 h 01 min`` for details."""
    minutes, seconds = divmod(abs(us) // 1_000_000, 60)
    text = f"{minutes // 60} h {minutes % 60:02d} min"
    if seconds:
        text += f" {seconds:02d} s"
    return ("-" if us < 0 else "") + text


# -- input --------------------------------------------------------------------------------------


def _person_key(value: Any, field: str) -> str:
    """Person ids are compared as text (1 and "1" are the same person)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip()):
        raise ScheduleError(f"{field}: expected a person id (integer or non-empty string), got {value!r}")
    return str(value).strip()


class Person:
    __slots__ = ("id", "key", "name", "type", "pgy_level")

    def __init__(self, person_id: Any, key: str, name: str, person_type: str, pgy_level: int | None):
        self.id = person_id
        self.key = key
        self.name = name
        self.type = person_type
        self.pgy_level = pgy_level

    @property
    def is_resident(self) -> bool:
        return self.type == "resident"


class Shift:
    __slots__ = ("index", "ref", "person", "start", "end", "kind", "worked")

    def __init__(self, index: int, ref: Any, person: Person, start: int, end: int, kind: str, worked: bool):
        self.index = index
        self.ref = ref
        self.person = person
        self.start = start
        self.end = end
        self.kind = kind
        self.worked = worked

    @property
    def counts(self) -> bool:
        """Work time: everything but home call that was not worked."""
        return self.kind != "home_call" or self.worked


def parse_people(people: Any) -> dict[str, Person]:
    if people is None:
        people = []
    if not isinstance(people, (list, tuple)):
        raise ScheduleError(f"people: expected a list of {{id, name, type, pgy_level}}, got {type(people).__name__}")
    result: dict[str, Person] = {}
    for index, raw in enumerate(people):
        field = f"people[{index}]"
        if not isinstance(raw, dict):
            raise ScheduleError(f"{field}: expected a mapping with id, name, type and pgy_level, got {raw!r}")
        unknown = sorted(set(raw) - set(PERSON_KEYS))
        if unknown:
            raise ScheduleError(f"{field}: unknown field(s) {', '.join(map(str, unknown))} (known: {', '.join(PERSON_KEYS)})")
        if "id" not in raw:
            raise ScheduleError(f"{field}.id: missing")
        key = _person_key(raw["id"], f"{field}.id")
        if key in result:
            raise ScheduleError(f"{field}.id: {raw['id']!r} appears twice in people")
        person_type = raw.get("type")
        if person_type not in PERSON_TYPES:
            raise ScheduleError(f"{field}.type: expected resident or faculty, got {person_type!r}")
        pgy = raw.get("pgy_level")
        if person_type == "resident":
            if isinstance(pgy, str) and pgy.strip().isdigit():
                pgy = int(pgy.strip())
            if isinstance(pgy, bool) or not isinstance(pgy, int) or not 1 <= pgy <= 10:
                raise ScheduleError(f"{field}.pgy_level: a resident needs a PGY level between 1 and 10, got {pgy!r}")
        else:
            pgy = None
        name = raw.get("name")
        name = str(raw["id"]) if name is None else str(name)
        result[key] = Person(raw["id"], key, name, person_type, pgy)
    return result


def _instant(value: Any, index: int, name: str, tz, cache: dict[Any, int]) -> int:
    """parse_instant with a cache: schedules repeat the same block times for many people. Equal strings, and
    equal datetimes (aware ones are equal only when they are the same instant), give the same instant."""
    if isinstance(value, (str, datetime)):
        found = cache.get(value)
        if found is None:
            found = cache[value] = parse_instant(value, f"shifts[{index}].{name}", tz)
        return found
    return parse_instant(value, f"shifts[{index}].{name}", tz)


def parse_shifts(shifts: Any, people: dict[str, Person], tz) -> tuple[list[Shift], list[str]]:
    """Validated shifts and warnings. Errors name the shift index and field.

    The loop is the hot path for a year of a large programme (tens of thousands of shifts): messages
    are only formatted when something is wrong."""
    if shifts is None:
        shifts = []
    if not isinstance(shifts, (list, tuple)):
        raise ScheduleError(f"shifts: expected a list of {{person_id, start, end, kind}}, got {type(shifts).__name__}")
    result: list[Shift] = []
    seen: dict[tuple, int] = {}
    instants: dict[Any, int] = {}
    for index, raw in enumerate(shifts):
        if not isinstance(raw, dict):
            raise ScheduleError(f"shifts[{index}]: expected a mapping with person_id, start, end and kind, got {raw!r}")
        if not raw.keys() <= _SHIFT_KEYSET:
            unknown = sorted(set(map(str, raw)) - _SHIFT_KEYSET)
            raise ScheduleError(f"shifts[{index}]: unknown field(s) {', '.join(unknown)} (known: {', '.join(SHIFT_KEYS)})")
        for required in _REQUIRED_SHIFT_KEYS:
            if raw.get(required) is None:
                raise ScheduleError(f"shifts[{index}].{required}: missing")
        person_id = raw["person_id"]
        id_type = type(person_id)
        key = person_id if id_type is str else str(person_id) if id_type is int else None
        person = people.get(key)
        if person is None:
            key = _person_key(person_id, f"shifts[{index}].person_id")
            person = people.get(key)
            if person is None:
                raise ScheduleError(f"shifts[{index}].person_id: unknown person {person_id!r} (not in people)")
        kind = raw["kind"]
        if kind not in KINDS:
            raise ScheduleError(f"shifts[{index}].kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        worked = raw.get("worked")
        if worked is None:
            worked = kind != "home_call"
        elif not isinstance(worked, bool):
            raise ScheduleError(f"shifts[{index}].worked: expected true or false, got {worked!r}")
        elif not worked and kind != "home_call":
            raise ScheduleError(f"shifts[{index}].worked: only home_call shifts can be not worked; remove the {kind} shift instead")
        start = _instant(raw["start"], index, "start", tz, instants)
        end = _instant(raw["end"], index, "end", tz, instants)
        if end <= start:
            raise ScheduleError(f"shifts[{index}].end: {raw['end']} is not after start {raw['start']}")
        identity = (key, start, end, kind)
        if identity in seen:
            raise ScheduleError(f"shifts[{index}]: duplicate of shifts[{seen[identity]}] (same person, start, end and kind); remove one")
        seen[identity] = index
        result.append(Shift(index, raw.get("id", index), person, start, end, kind, worked))
    return result, []


# -- per-person structures ----------------------------------------------------------------------


class Period:
    """A continuous work period: merged overlapping or touching shifts."""

    __slots__ = ("start", "end", "shifts")

    def __init__(self, start: int, end: int, shift: Shift):
        self.start = start
        self.end = end
        self.shifts = [shift]

    @property
    def duration(self) -> int:
        return self.end - self.start


def merge(shifts: list[Shift], overlaps: list[tuple[Shift, Shift]] | None = None) -> list[Period]:
    """Shifts sorted by start → continuous periods (touching shifts merge; overlaps are noted)."""
    periods: list[Period] = []
    for shift in shifts:
        if periods and shift.start <= periods[-1].end:
            current = periods[-1]
            if overlaps is not None and shift.start < current.end:
                other = max((s for s in current.shifts if s.end > shift.start), key=lambda s: s.end)
                overlaps.append((other, shift))
            current.shifts.append(shift)
            if shift.end > current.end:
                current.end = shift.end
        else:
            periods.append(Period(shift.start, shift.end, shift))
    return periods


def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(pair[0], pair[1]) for pair in merged]


def subtract(intervals: list[tuple[int, int]], cover: list[tuple[int, int]], cover_starts: list[int]) -> list[tuple[int, int]]:
    """Parts of merged ``intervals`` not inside the merged, sorted ``cover``."""
    gaps: list[tuple[int, int]] = []
    for start, end in intervals:
        position = start
        index = max(bisect.bisect_right(cover_starts, start) - 1, 0)
        while position < end and index < len(cover):
            c_start, c_end = cover[index]
            if c_end <= position:
                index += 1
                continue
            if c_start >= end:
                break
            if c_start > position:
                gaps.append((position, c_start))
            position = max(position, c_end)
            index += 1
        if position < end:
            gaps.append((position, end))
    return gaps


class Timeline:
    """One person's day-by-day figures on the shared day grid (ordinal ``base`` .. ``base + size``)."""

    def __init__(self, calendar: Calendar, base: int, size: int):
        self.calendar = calendar
        self.base = base
        self.work_us = [0] * size
        self.busy = [0] * size  # 1 when the day is not free: any work, or home call assigned
        self.call_starts = [0] * size

    def add_work(self, start: int, end: int) -> None:
        day = self.calendar.day_of(start)
        while True:
            boundary = self.calendar.day_start(day + 1)
            index = day - self.base
            self.busy[index] = 1
            if end <= boundary:
                self.work_us[index] += end - start
                return
            self.work_us[index] += boundary - start
            start = boundary
            day += 1

    def add_busy(self, start: int, end: int) -> None:
        """Home call assigned on a day makes it not free, worked or not (VI.F.3.a: at-home call cannot be
        assigned on the free days)."""
        day = self.calendar.day_of(start)
        last = self.calendar.day_of(end - 1)
        for ordinal in range(day, last + 1):
            self.busy[ordinal - self.base] = 1


def prefix(values: list[int]) -> list[int]:
    """Prefix sums: ``sums[j] - sums[i]`` is the total of ``values[i:j]``."""
    return list(accumulate(values, initial=0))


def runs(flags: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True as (first, last) indexes."""
    result = []
    first = None
    for index, flag in enumerate(flags):
        if flag and first is None:
            first = index
        elif not flag and first is not None:
            result.append((first, index - 1))
            first = None
    if first is not None:
        result.append((first, len(flags) - 1))
    return result


# -- the check ----------------------------------------------------------------------------------


class _Context:
    def __init__(self, calendar: Calendar, as_of: int):
        self.calendar = calendar
        self.as_of = as_of
        self.violations: list[dict[str, Any]] = []

    def add(self, rule: str, person: Person, start: int, end: int, value: float, limit: float, detail: str,
            shifts: list[Shift], window: tuple[int, int] | None = None) -> None:
        iso = self.calendar.iso
        self.violations.append({
            "rule": rule,
            "person_id": person.id,
            "person_name": person.name,
            "pgy_level": person.pgy_level,
            "start": iso(start),
            "end": iso(end),
            "value": value,
            "limit": limit,
            "status": "historical" if end <= self.as_of else "future",
            "detail": detail,
            "window": {"start": iso(window[0]), "end": iso(window[1])} if window else None,
            "shift_ids": _shift_ids(shifts),
            "_sort": (start, person.key, RULES.index(rule)),
        })


def _shift_ids(shifts: list[Shift]) -> list[Any]:
    ordered = sorted({s.index: s for s in shifts}.values(), key=lambda s: (s.start, s.index))
    return [s.ref for s in ordered]


def _shifts_between(periods: list[Period], starts: list[int], start: int, end: int) -> list[Shift]:
    """Shifts of the periods that intersect [start, end)."""
    found = []
    index = max(bisect.bisect_right(starts, start) - 1, 0)
    while index < len(periods) and periods[index].start < end:
        for shift in periods[index].shifts:
            if shift.end > start and shift.start < end:
                found.append(shift)
        index += 1
    return found


def _last_end_between(periods: list[Period], starts: list[int], start: int, end: int) -> int | None:
    """End (clipped to ``end``) of the last period intersecting [start, end)."""
    index = bisect.bisect_left(starts, end) - 1
    if index >= 0 and periods[index].end > start:
        return min(periods[index].end, end)
    return None


def check(shifts: Any, people: Any, as_of: Any = None, timezone: str | None = None, rules: list[str] | None = None,
          weekly_hours_warning: float = 75, now: float | None = None, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Check a schedule; see the module docstring for every definition. Raises ScheduleError on bad input."""
    clock = TIMER
    started = clock()
    tz = load_timezone(timezone)
    selected = _select_rules(rules)
    if isinstance(weekly_hours_warning, bool) or not isinstance(weekly_hours_warning, (int, float)) or not 0 < weekly_hours_warning <= 168:
        raise ScheduleError(f"weekly_hours_warning: expected a number of hours between 0 and 168, got {weekly_hours_warning!r}")
    calendar = Calendar(tz)
    as_of_us = resolve_as_of(as_of, tz, now)
    persons = parse_people(people)
    parsed, warnings = parse_shifts(shifts, persons, tz)
    _time(timings, "parse", started, clock)

    context = _Context(calendar, as_of_us)
    by_person: dict[str, list[Shift]] = {key: [] for key in persons}
    for shift in parsed:
        by_person[shift.person.key].append(shift)
    for items in by_person.values():
        items.sort(key=lambda s: (s.start, s.end, s.index))

    if parsed:
        first_day = calendar.day_of(min(s.start for s in parsed))
        last_day = calendar.day_of(max(s.end for s in parsed) - 1)
    else:
        first_day = last_day = calendar.day_of(as_of_us)
    # 28 days of padding both sides: every window touching the data has a place on the grid.
    base = first_day - WINDOW_DAYS
    size = last_day - base + WINDOW_DAYS + 1
    calendar.prepare(base, base + size)
    week_day = calendar.day_of(as_of_us)

    hours_report = []
    approaching = []
    faculty_cover: list[tuple[int, int]] = []
    pgy1 = []
    step = clock()
    for key, person in persons.items():
        items = by_person[key]
        overlaps: list[tuple[Shift, Shift]] = []
        periods = merge([s for s in items if s.counts], overlaps)
        for first, second in overlaps:
            warnings.append(f"shifts[{first.index}] and shifts[{second.index}] of person {person.id!r} overlap; "
                            "merged into one continuous period, the overlap counted once")
        timeline = Timeline(calendar, base, size)
        for period in periods:
            timeline.add_work(period.start, period.end)
        for shift in items:
            if shift.kind == "home_call":
                timeline.add_busy(shift.start, shift.end)
        calls = merge([s for s in items if s.kind == "call"])
        for call in calls:
            timeline.call_starts[calendar.day_of(call.start) - base] += 1
        work_sums = prefix(timeline.work_us)
        hours_report.append(_hours_entry(person, timeline, work_sums, calendar, base, size))
        if person.type == "faculty":
            faculty_cover.extend((s.start, s.end) for s in items if s.kind in SUPERVISION_COVER_KINDS)
            continue
        if person.pgy_level == 1:
            pgy1.append((person, items))
        entry = _approaching(person, periods, calendar, week_day, as_of_us, weekly_hours_warning, work_sums, base)
        if entry:
            approaching.append(entry)
        starts = [p.start for p in periods]
        for rule in selected:
            rule_start = clock()
            if rule == "weekly_80h_avg4w":
                _rule_weekly(context, person, periods, starts, timeline, work_sums)
            elif rule == "one_day_off_in_7":
                _rule_day_off(context, person, periods, starts, items, timeline)
            elif rule == "continuous_24h_plus4":
                _rule_continuous(context, person, periods)
            elif rule == "rest_14h_after_24h_call":
                _rule_rest(context, person, periods, after_long=True)
            elif rule == "rest_8h_between_shifts":
                _rule_rest(context, person, periods, after_long=False, skip_long="rest_14h_after_24h_call" in selected)
            elif rule == "call_q3_avg4w":
                _rule_calls(context, person, calls, timeline)
            else:
                continue
            if timings is not None:
                timings[rule] = timings.get(rule, 0.0) + clock() - rule_start
    _time(timings, "people", step, clock)

    if "pgy1_supervision" in selected:
        step = clock()
        cover = merge_intervals(faculty_cover)
        cover_starts = [c[0] for c in cover]
        for person, items in pgy1:
            supervised = [s for s in items if s.kind in SUPERVISED_KINDS]
            needed = merge_intervals([(s.start, s.end) for s in supervised])
            for gap_start, gap_end in subtract(needed, cover, cover_starts):
                involved = [s for s in supervised if s.start < gap_end and s.end > gap_start]
                context.add("pgy1_supervision", person, gap_start, gap_end, hours(gap_end - gap_start), 0,
                            f"PGY-1 {person.name} works {hm(gap_end - gap_start)} from {calendar.iso(gap_start)} to {calendar.iso(gap_end)} "
                            "with no faculty member working (work or in-house call) at the same time", involved)
        _time(timings, "pgy1_supervision", step, clock)

    violations = sorted(context.violations, key=lambda v: v["_sort"])
    for violation in violations:
        del violation["_sort"]
    summary = _summary(persons, parsed, violations, approaching, selected, calendar, as_of_us, first_day, last_day, weekly_hours_warning, tz)
    busiest = max((h for h in hours_report if h["type"] == "resident"), key=lambda h: h["max_avg_4w"], default=None)
    summary["max_resident_avg_4w"] = None if busiest is None else {
        "person_id": busiest["person_id"], "name": busiest["name"], "hours": busiest["max_avg_4w"], "window": busiest["max_avg_4w_window"]}
    _time(timings, "total", started, clock)
    return {"violations": violations, "hours": hours_report, "approaching": approaching, "summary": summary, "warnings": warnings}


def _time(timings: dict[str, float] | None, name: str, started: float, clock: Callable[[], float]) -> None:
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + clock() - started


def burden(violations: list[dict[str, Any]]) -> tuple[int, float, float]:
    """How bad a set of violations is: their number, their total excess over the limits, and their total length
    in seconds (a violation that lasts longer is worse even when its worst value stays the same)."""
    excess = sum(abs(v["value"] - v["limit"]) for v in violations)
    span = sum((datetime.fromisoformat(v["end"]) - datetime.fromisoformat(v["start"])).total_seconds() for v in violations)
    return len(violations), excess, span


def _select_rules(rules: Any) -> list[str]:
    if rules is None or rules == []:
        return list(RULES)
    if isinstance(rules, str) or not isinstance(rules, (list, tuple)):
        raise ScheduleError(f"rules: expected a list of rule names, got {rules!r}")
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ScheduleError(f"rules: unknown rule(s) {', '.join(map(str, unknown))} (known: {', '.join(RULES)})")
    return [r for r in RULES if r in rules]


# -- the rules ----------------------------------------------------------------------------------


def _window_runs(values: list, breaks: Callable[[Any], bool]) -> list[tuple[int, int]]:
    return runs([breaks(v) for v in values])


def _rule_weekly(context: _Context, person: Person, periods: list[Period], starts: list[int], timeline: Timeline, sums: list[int]) -> None:
    """weekly_80h_avg4w: more than 320 h of work in a 28-day window (80 h/week averaged over 4 weeks).
    Hours are real elapsed time of the merged work periods (moonlighting and worked home call included)."""
    calendar, base = context.calendar, timeline.base
    anchors = len(timeline.work_us) - WINDOW_DAYS + 1
    totals = [sums[a + WINDOW_DAYS] - sums[a] for a in range(anchors)]
    for first, last in _window_runs(totals, lambda total: total > WINDOW_HOURS_LIMIT_US):
        worst = max(range(first, last + 1), key=lambda a: (totals[a], -a))
        run_start = calendar.day_start(base + first)
        run_end = calendar.day_start(base + last + WINDOW_DAYS)
        end = _last_end_between(periods, starts, run_start, run_end) or run_end
        w_start, w_end = calendar.day_start(base + worst), calendar.day_start(base + worst + WINDOW_DAYS)
        average = totals[worst] / 4
        context.add("weekly_80h_avg4w", person, run_start, end, hours(average), WEEKLY_HOURS_LIMIT,
                    f"{hours(average)} h/week averaged over the 28 days {_dates(calendar, w_start, w_end)} "
                    f"({hours(totals[worst])} h in the window, limit 320 h); {last - first + 1} overlapping window(s) over the limit",
                    _shifts_between(periods, starts, w_start, w_end), (w_start, w_end))


def _rule_day_off(context: _Context, person: Person, periods: list[Period], starts: list[int], items: list[Shift], timeline: Timeline) -> None:
    """one_day_off_in_7: fewer than 4 free calendar days in a 28-day window. A free day is a local calendar
    day with no work at any moment and no home call assigned (worked or not)."""
    calendar, base = context.calendar, timeline.base
    sums = prefix(timeline.busy)
    anchors = len(timeline.busy) - WINDOW_DAYS + 1
    free = [WINDOW_DAYS - (sums[a + WINDOW_DAYS] - sums[a]) for a in range(anchors)]
    busy_shifts = [s for s in items if s.counts or s.kind == "home_call"]
    busy_starts = [s.start for s in busy_shifts]
    for first, last in _window_runs(free, lambda count: count < MIN_FREE_DAYS):
        worst = min(range(first, last + 1), key=lambda a: (free[a], a))
        run_start = calendar.day_start(base + first)
        run_end = calendar.day_start(base + last + WINDOW_DAYS)
        ends = [min(s.end, run_end) for s in busy_shifts[:bisect.bisect_left(busy_starts, run_end)] if s.end > run_start]
        end = max(ends) if ends else run_end
        w_start, w_end = calendar.day_start(base + worst), calendar.day_start(base + worst + WINDOW_DAYS)
        involved = [s for s in busy_shifts if s.start < w_end and s.end > w_start]
        context.add("one_day_off_in_7", person, run_start, end, free[worst], MIN_FREE_DAYS,
                    f"{free[worst]} free day(s) in the 28 days {_dates(calendar, w_start, w_end)} (at least 4 required: one day in seven "
                    f"averaged over four weeks); {last - first + 1} overlapping window(s) short of free days", involved, (w_start, w_end))


def _rule_continuous(context: _Context, person: Person, periods: list[Period]) -> None:
    """continuous_24h_plus4: a continuous work period (touching or overlapping shifts merged) longer than 28 h."""
    for period in periods:
        if period.duration > CONTINUOUS_LIMIT_US:
            context.add("continuous_24h_plus4", person, period.start, period.end, hours(period.duration), 28,
                        f"continuous work for {hm(period.duration)} from {context.calendar.iso(period.start)} to "
                        f"{context.calendar.iso(period.end)} (limit 24 h + 4 h for transitions of care)", period.shifts)


def _rule_rest(context: _Context, person: Person, periods: list[Period], after_long: bool, skip_long: bool = False) -> None:
    """rest_14h_after_24h_call: less than 14 h free after a continuous period of 24 h or more (any kinds; in
    practice an extended in-house call). rest_8h_between_shifts: less than 8 h between two work periods; a
    gap after a 24 h period is left to the 14 h rule when both are checked, so one short rest is one violation."""
    iso = context.calendar.iso
    for before, after in zip(periods, periods[1:]):
        gap = after.start - before.end
        long_before = before.duration >= LONG_PERIOD_US
        if after_long:
            if long_before and gap < REST_AFTER_LONG_US:
                context.add("rest_14h_after_24h_call", person, before.end, after.start, hours(gap), 14,
                            f"{hm(gap)} free between a {hm(before.duration)} period ending {iso(before.end)} and work starting "
                            f"{iso(after.start)} (at least 14 h required after 24 h)", before.shifts + after.shifts)
        elif gap < REST_BETWEEN_US and not (skip_long and long_before):
            context.add("rest_8h_between_shifts", person, before.end, after.start, hours(gap), 8,
                        f"{hm(gap)} between work ending {iso(before.end)} and work starting {iso(after.start)} (8 h expected)",
                        before.shifts + after.shifts)


def _rule_calls(context: _Context, person: Person, calls: list[Period], timeline: Timeline) -> None:
    """call_q3_avg4w: more than 9 in-house call periods starting in a 28-day window (every third night over 4
    weeks is 9.33). A call period is merged in-house call shifts (touching or overlapping count once), counted
    on the local day it starts."""
    calendar, base = context.calendar, timeline.base
    sums = prefix(timeline.call_starts)
    anchors = len(timeline.call_starts) - WINDOW_DAYS + 1
    counts = [sums[a + WINDOW_DAYS] - sums[a] for a in range(anchors)]
    for first, last in _window_runs(counts, lambda count: count > MAX_CALLS_IN_WINDOW):
        worst = max(range(first, last + 1), key=lambda a: (counts[a], -a))
        run_start = calendar.day_start(base + first)
        run_end = calendar.day_start(base + last + WINDOW_DAYS)
        in_run = [c for c in calls if run_start <= c.start < run_end]
        end = max(c.end for c in in_run)
        w_start, w_end = calendar.day_start(base + worst), calendar.day_start(base + worst + WINDOW_DAYS)
        involved = [s for c in calls if w_start <= c.start < w_end for s in c.shifts]
        context.add("call_q3_avg4w", person, run_start, end, counts[worst], MAX_CALLS_IN_WINDOW,
                    f"{counts[worst]} in-house call periods start in the 28 days {_dates(calendar, w_start, w_end)} (at most 9: every "
                    f"third night averaged over four weeks); {last - first + 1} overlapping window(s) over the limit", involved, (w_start, w_end))


def _dates(calendar: Calendar, start: int, end: int) -> str:
    return f"{calendar.date_of(start).isoformat()} to {calendar.date_of(end - 1).isoformat()}"


# -- reports ------------------------------------------------------------------------------------


def _hours_entry(person: Person, timeline: Timeline, sums: list[int], calendar: Calendar, base: int, size: int) -> dict[str, Any]:
    """Hours per ISO week (local Monday to Monday), each with the average of it and the three weeks before,
    and the worst 28-day window (the figure weekly_80h_avg4w compares)."""
    weeks = []
    total = sums[-1]
    worst_total, worst_anchor = 0, None
    if total:
        nonzero = [i for i, value in enumerate(timeline.work_us) if value]
        first_day, last_day = base + nonzero[0], base + nonzero[-1]
        monday = first_day - date.fromordinal(first_day).weekday()
        history: list[int] = []
        while monday <= last_day:
            lo = max(monday - base, 0)
            hi = min(monday + 7 - base, size)
            week_us = sums[hi] - sums[lo]
            history.append(week_us)
            iso_year, iso_week, _unused = date.fromordinal(monday).isocalendar()
            weeks.append({
                "week": f"{iso_year}-W{iso_week:02d}",
                "start": date.fromordinal(monday).isoformat(),
                "hours": hours(week_us),
                "avg_4w": hours(sum(history[-4:]) // 4) if len(history) >= 1 else 0.0,
            })
            monday += 7
        totals = [sums[a + WINDOW_DAYS] - sums[a] for a in range(size - WINDOW_DAYS + 1)]
        worst_total = max(totals)
        worst_anchor = totals.index(worst_total)  # the earliest worst window
    return {
        "person_id": person.id,
        "name": person.name,
        "type": person.type,
        "pgy_level": person.pgy_level,
        "total_hours": hours(total),
        "weeks": weeks,
        "max_avg_4w": hours(worst_total // 4),
        "max_avg_4w_window": None if worst_anchor is None else {
            "first_day": date.fromordinal(base + worst_anchor).isoformat(),
            "last_day": date.fromordinal(base + worst_anchor + WINDOW_DAYS - 1).isoformat(),
        },
    }


def _approaching(person: Person, periods: list[Period], calendar: Calendar, day: int, as_of: int, threshold: float,
                 sums: list[int], base: int) -> dict[str, Any] | None:
    """Hours of the ISO week containing ``as_of`` (worked and still scheduled) against the warning threshold."""
    monday = day - date.fromordinal(day).weekday()
    week_start, week_end = calendar.day_start(monday), calendar.day_start(monday + 7)
    worked = scheduled = 0
    upcoming = []
    for period in periods:
        start, end = max(period.start, week_start), min(period.end, week_end)
        if start >= end:
            continue
        worked += max(min(end, as_of) - start, 0)
        scheduled += max(end - max(start, as_of), 0)
        upcoming.extend(s for s in period.shifts if s.end > as_of and s.start < week_end and s.end > week_start)
    total = worked + scheduled
    if total < threshold * US_PER_HOUR:
        return None
    lo, hi = monday - 21 - base, monday + 7 - base
    four_weeks = sums[min(max(hi, 0), len(sums) - 1)] - sums[min(max(lo, 0), len(sums) - 1)]
    iso_year, iso_week, _unused = date.fromordinal(monday).isocalendar()
    return {
        "person_id": person.id,
        "name": person.name,
        "pgy_level": person.pgy_level,
        "week": f"{iso_year}-W{iso_week:02d}",
        "week_start": calendar.iso(week_start),
        "hours": hours(total),
        "worked_hours": hours(worked),
        "scheduled_hours": hours(scheduled),
        "threshold": threshold,
        "avg_4w": hours(four_weeks // 4),
        "upcoming_shift_ids": _shift_ids(upcoming),
    }


def _summary(persons, parsed, violations, approaching, selected, calendar, as_of, first_day, last_day, threshold, tz) -> dict[str, Any]:
    by_rule = {rule: 0 for rule in selected}
    by_person: dict[str, dict[str, Any]] = {}
    for violation in violations:
        by_rule[violation["rule"]] += 1
        key = str(violation["person_id"])
        entry = by_person.setdefault(key, {"person_id": violation["person_id"], "name": violation["person_name"], "count": 0, "rules": []})
        entry["count"] += 1
        if violation["rule"] not in entry["rules"]:
            entry["rules"].append(violation["rule"])
    return {
        "as_of": calendar.iso(as_of),
        "timezone": getattr(tz, "key", None) or "UTC",
        "rules": selected,
        "people": len(persons),
        "residents": sum(p.is_resident for p in persons.values()),
        "faculty": sum(not p.is_resident for p in persons.values()),
        "shifts": len(parsed),
        "first_day": date.fromordinal(first_day).isoformat() if parsed else None,
        "last_day": date.fromordinal(last_day).isoformat() if parsed else None,
        "violations": len(violations),
        "historical": sum(v["status"] == "historical" for v in violations),
        "future": sum(v["status"] == "future" for v in violations),
        "by_rule": by_rule,
        "by_person": sorted(by_person.values(), key=lambda e: (-e["count"], str(e["person_id"]))),
        "approaching": len(approaching),
        "weekly_hours_warning": threshold,
        "compliant": not violations,
    }


# -- PostgreSQL source --------------------------------------------------------------------------

# Clock hours of each half-day block in the program timezone. The lab's scheduler counts 6 h per block.
DEFAULT_BLOCK_HOURS = {"AM": "07:00-13:00", "PM": "13:00-19:00"}
# First matching rule decides what an assignment is; no match → work during its block's hours.
DEFAULT_ASSIGNMENT_RULES: list[dict[str, Any]] = [
    # in-house call: a PM call runs overnight to 07:00 (with the AM block that is 24 h)
    {"match": {"activity": ["call", "in_house_call"]}, "kind": "call", "hours": {"AM": "07:00-13:00", "PM": "13:00-07:00"}},
    {"match": {"activity": ["home_call"]}, "kind": "home_call"},
    {"match": {"activity": ["leave", "vacation", "off"]}, "kind": "ignore"},
]
MATCH_FIELDS = ("role", "activity", "activity_type", "activity_override", "rotation_name", "rotation_abbreviation",
                "time_of_day", "day_type", "is_weekend", "is_holiday")
RULE_KEYS = ("match", "kind", "hours", "worked")
RULE_KINDS = KINDS + ("ignore",)


def parse_clock_range(value: Any, field: str) -> tuple[dtime, dtime, bool]:
    """``07:00-13:00`` → (start, end, ends next day). An end at or before the start is on the next day."""
    if not isinstance(value, str) or value.count("-") != 1:
        raise ScheduleError(f"{field}: expected clock hours such as 07:00-13:00, got {value!r}")
    parts = []
    for text in value.split("-"):
        try:
            parts.append(dtime.fromisoformat(text.strip()))
        except ValueError:
            raise ScheduleError(f"{field}: {text.strip()!r} is not a clock time such as 07:00 (in {value!r})") from None
    start, end = parts
    return start, end, end <= start


def parse_block_hours(block_hours: Any) -> dict[str, tuple[dtime, dtime, bool]]:
    if block_hours is None:
        block_hours = DEFAULT_BLOCK_HOURS
    if not isinstance(block_hours, dict) or not block_hours:
        raise ScheduleError(f"block_hours: expected a mapping of time_of_day to clock hours such as {{AM: 07:00-13:00}}, got {block_hours!r}")
    return {str(k).upper(): parse_clock_range(v, f"block_hours.{k}") for k, v in block_hours.items()}


def parse_assignment_rules(rules: Any) -> list[dict[str, Any]]:
    if rules is None:
        rules = DEFAULT_ASSIGNMENT_RULES
    if not isinstance(rules, (list, tuple)):
        raise ScheduleError(f"assignment_rules: expected a list of {{match, kind, hours, worked}}, got {rules!r}")
    parsed = []
    for index, rule in enumerate(rules):
        field = f"assignment_rules[{index}]"
        if not isinstance(rule, dict):
            raise ScheduleError(f"{field}: expected a mapping with match and kind, got {rule!r}")
        unknown = sorted(set(map(str, rule)) - set(RULE_KEYS))
        if unknown:
            raise ScheduleError(f"{field}: unknown key(s) {', '.join(unknown)} (known: {', '.join(RULE_KEYS)})")
        match = rule.get("match") or {}
        if not isinstance(match, dict):
            raise ScheduleError(f"{field}.match: expected a mapping of field to value(s), got {match!r}")
        conditions = {}
        for name, accepted in match.items():
            if name not in MATCH_FIELDS:
                raise ScheduleError(f"{field}.match.{name}: unknown field (known: {', '.join(MATCH_FIELDS)})")
            values = accepted if isinstance(accepted, (list, tuple)) else [accepted]
            for value in values:
                if value is not None and not isinstance(value, (str, int, float)):
                    raise ScheduleError(f"{field}.match.{name}: expected a value or a list of values (text, number, true/false), "
                                        f"got {value!r}")
            conditions[name] = {_normalise_value(v) for v in values}
        kind = rule.get("kind")
        if kind not in RULE_KINDS:
            raise ScheduleError(f"{field}.kind: expected one of {', '.join(RULE_KINDS)}, got {kind!r}")
        worked = rule.get("worked")
        if worked is not None and not isinstance(worked, bool):
            raise ScheduleError(f"{field}.worked: expected true or false, got {worked!r}")
        hours_spec = rule.get("hours")
        if hours_spec is None:
            clock_hours = None
        elif isinstance(hours_spec, dict):
            clock_hours = {str(k).upper(): parse_clock_range(v, f"{field}.hours.{k}") for k, v in hours_spec.items()}
        else:
            clock_hours = {"*": parse_clock_range(hours_spec, f"{field}.hours")}
        parsed.append({"conditions": conditions, "kind": kind, "hours": clock_hours, "worked": worked})
    return parsed


def _normalise_value(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower()
    return value


def _parse_date(value: Any, field: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ScheduleError(f"{field}: expected a date such as 2026-03-01, got {value!r}") from None


# Expressions for the optional columns; a column the schema lacks reads as NULL (and never matches).
_OPTIONAL = {
    "role": ("assignments", "role"),
    "activity_override": ("assignments", "activity_override"),
    "day_type": ("blocks", "day_type"),
    "is_weekend": ("blocks", "is_weekend"),
    "is_holiday": ("blocks", "is_holiday"),
    "rotation_name": ("rotation_templates", "name"),
    "activity_type": ("rotation_templates", "activity_type"),
    "rotation_abbreviation": ("rotation_templates", "abbreviation"),
}
_REQUIRED = {
    "people": ("id", "name", "type", "pgy_level"),
    "blocks": ("id", "date", "time_of_day"),
    "assignments": ("id", "block_id", "person_id"),
}
_ALIASES = {"people": "p", "blocks": "b", "assignments": "a", "rotation_templates": "rt"}


class PostgresMapping:
    """How the scheduler's half-day blocks become shifts; validated before any connection is made."""

    def __init__(self, tz_name: str | None, block_hours: Any = None, assignment_rules: Any = None, date_from: Any = None,
                 date_to: Any = None, db_schema: str = "public"):
        self.tz = load_timezone(tz_name)
        if self.tz is None:
            raise ScheduleError("timezone: required with source=postgres (blocks are dates and AM/PM half-days, "
                                "read as clock times in the program timezone)")
        self.block_hours = parse_block_hours(block_hours)
        self.rules = parse_assignment_rules(assignment_rules)
        self.date_from, self.date_to = _parse_date(date_from, "date_from"), _parse_date(date_to, "date_to")
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ScheduleError(f"date_to: {self.date_to} is before date_from {self.date_from}")
        if not isinstance(db_schema, str) or not db_schema:
            raise ScheduleError(f"db_schema: expected a schema name, got {db_schema!r}")
        self.db_schema = db_schema


def load_postgres(conn, mapping: PostgresMapping, module_params: dict | None = None) -> dict[str, Any]:
    """Read people and assignments (blocks → clock hours via the mapping) into
    ``{"people": [...], "shifts": [...], "source": {...}}`` for ``check``."""
    # pylint: disable=too-many-locals
    # psycopg only when the database is used: the shifts source needs no driver
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    from ansible_collections.sre.runbooks.plugins.module_utils._postgres import fetch_all  # pylint: disable=import-outside-toplevel

    db_schema, first, last = mapping.db_schema, mapping.date_from, mapping.date_to
    rows = fetch_all(conn, "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = ANY(%s)",
                     (db_schema, list(_ALIASES)), what="reading the schedule schema", module_params=module_params)
    columns: dict[str, set[str]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], set()).add(row["column_name"])
    for table, needed in _REQUIRED.items():
        missing = [c for c in needed if c not in columns.get(table, set())]
        if missing:
            raise ScheduleError(f"db_schema: table {db_schema}.{table} is missing or lacks column(s) {', '.join(missing)}")
    join_rotations = "rotation_template_id" in columns["assignments"] and {"id"} <= columns.get("rotation_templates", set())
    selects = [sql.SQL("a.id AS assignment_id, a.person_id, b.id AS block_id, b.date AS block_date, b.time_of_day")]
    missing_columns = []
    for name, (table, column) in _OPTIONAL.items():
        available = column in columns.get(table, set()) and (table != "rotation_templates" or join_rotations)
        if available:
            selects.append(sql.SQL("{}.{} AS {}").format(sql.Identifier(_ALIASES[table]), sql.Identifier(column), sql.Identifier(name)))
        else:
            selects.append(sql.SQL("NULL AS {}").format(sql.Identifier(name)))
            missing_columns.append(f"{table}.{column}")
    query = sql.SQL("SELECT {selects} FROM {assignments} a JOIN {blocks} b ON b.id = a.block_id").format(
        selects=sql.SQL(", ").join(selects),
        assignments=sql.Identifier(db_schema, "assignments"), blocks=sql.Identifier(db_schema, "blocks"))
    if join_rotations:
        query += sql.SQL(" LEFT JOIN {} rt ON rt.id = a.rotation_template_id").format(sql.Identifier(db_schema, "rotation_templates"))
    query += sql.SQL(" WHERE (%(first)s::date IS NULL OR b.date >= %(first)s::date) AND (%(last)s::date IS NULL OR b.date <= %(last)s::date)"
                     " ORDER BY a.person_id, b.date, b.time_of_day, a.id")
    assignments = fetch_all(conn, query, {"first": first, "last": last}, what="reading assignments", module_params=module_params)
    people_rows = fetch_all(conn, sql.SQL("SELECT id, name, type, pgy_level FROM {} ORDER BY id").format(sql.Identifier(db_schema, "people")),
                            what="reading people", module_params=module_params)

    shifts = []
    ignored = 0
    blocks: dict[Any, dict[str, Any]] = {}
    moments: dict[tuple, tuple[datetime, datetime]] = {}
    for row in assignments:
        shift = assignment_to_shift(row, mapping.rules, mapping.block_hours, mapping.tz, moments)
        if shift is None:
            ignored += 1
        else:
            shifts.append(shift)
            blocks[row["assignment_id"]] = {"block_id": row["block_id"], "date": row["block_date"], "time_of_day": row["time_of_day"],
                                            "role": row.get("role")}
    people = [{"id": r["id"], "name": r["name"], "type": r["type"], "pgy_level": r["pgy_level"]} for r in people_rows]
    return {
        "people": people,
        "shifts": shifts,
        "assignments": blocks,
        "source": {"assignments": len(assignments), "ignored_assignments": ignored, "shifts": len(shifts), "people": len(people),
                   "date_from": first.isoformat() if first else None, "date_to": last.isoformat() if last else None,
                   "missing_columns": missing_columns},
    }


def assignment_to_shift(row: dict[str, Any], rules: list[dict[str, Any]], block_hours: dict[str, tuple[dtime, dtime, bool]], tz,
                        moments: dict[tuple, tuple[datetime, datetime]] | None = None) -> dict[str, Any] | None:
    """One assignment row → a shift dict (``None`` for an ``ignore`` rule). The first matching rule wins."""
    fields = dict(row)
    fields["activity"] = row.get("activity_override") or row.get("activity_type")
    chosen = None
    for rule in rules:
        if all(_normalise_value(fields.get(name)) in accepted for name, accepted in rule["conditions"].items()):
            chosen = rule
            break
    kind = chosen["kind"] if chosen else "work"
    if kind == "ignore":
        return None
    time_of_day = str(row["time_of_day"]).upper()
    clock = None
    if chosen and chosen["hours"]:
        clock = chosen["hours"].get(time_of_day) or chosen["hours"].get("*")
    if clock is None:
        clock = block_hours.get(time_of_day)
    if clock is None:
        raise ScheduleError(f"block_hours: no clock hours for time_of_day {row['time_of_day']!r} (block {row['block_id']}, "
                            f"assignment {row['assignment_id']}); known: {', '.join(sorted(block_hours))}")
    day = row["block_date"]
    if moments is None:
        moments = {}
    key = (day, clock)
    if key not in moments:
        start_time, end_time, next_day = clock
        moments[key] = (datetime.combine(day, start_time, tzinfo=tz),
                        datetime.combine(day + timedelta(days=1) if next_day else day, end_time, tzinfo=tz))
    start, end = moments[key]
    shift = {"id": row["assignment_id"], "person_id": row["person_id"], "start": start, "end": end, "kind": kind}
    if chosen and chosen["worked"] is not None and kind == "home_call":
        shift["worked"] = chosen["worked"]
    return shift


def source_argument_spec() -> dict[str, Any]:
    """Options shared by the modules that read a schedule (shifts and people, or the scheduler's PostgreSQL)."""
    from ansible_collections.sre.runbooks.plugins.module_utils._postgres import postgres_argument_spec  # pylint: disable=import-outside-toplevel

    spec = postgres_argument_spec()
    spec.update({
        "source": {"type": "str", "choices": ["shifts", "postgres"], "default": "shifts"},
        "shifts": {"type": "list", "elements": "dict"},
        "people": {"type": "list", "elements": "dict"},
        "as_of": {"type": "str", "default": "now"},
        "timezone": {"type": "str"},
        "rules": {"type": "list", "elements": "str", "choices": list(RULES)},
        "weekly_hours_warning": {"type": "float", "default": 75},
        "block_hours": {"type": "dict", "default": dict(DEFAULT_BLOCK_HOURS)},
        "assignment_rules": {"type": "list", "elements": "dict"},
        "date_from": {"type": "str"},
        "date_to": {"type": "str"},
        "db_schema": {"type": "str", "default": "public"},
    })
    return spec


def read_schedule(params: dict[str, Any]) -> dict[str, Any]:
    """``{"shifts", "people", "assignments", "source"}`` from the module's options; raises ScheduleError or PostgresError."""
    if params["source"] != "postgres":
        return {"shifts": params["shifts"] or [], "people": params["people"], "assignments": {}, "source": None}
    from ansible_collections.sre.runbooks.plugins.module_utils._postgres import connect  # pylint: disable=import-outside-toplevel

    if params["shifts"] is not None or params["people"] is not None:
        raise ScheduleError("shifts/people: not used with source=postgres (the schedule is read from the database)")
    mapping = PostgresMapping(params["timezone"], params["block_hours"], params["assignment_rules"],
                              params["date_from"], params["date_to"], params["db_schema"])
    conn = connect(params, read_only=True)
    try:
        return load_postgres(conn, mapping, module_params=params)
    finally:
        conn.close()
