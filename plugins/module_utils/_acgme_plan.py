# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schedule changes that prevent future ACGME violations: which shifts to move, and who covers them.

``plan(shifts, people, ...)`` answers the runbooks' "If future violation: modify schedule to prevent
violation" and "Remove non-essential shifts if possible / find coverage for upcoming shifts". It never
changes anything; ``schedule_change`` applies what it proposes.

How a plan is made (every step re-runs the exact rules of ``_acgme.check``, never an estimate):

* Only shifts that have not started at ``as_of`` can move.
* For each resident with future violations (supervision gaps aside), shifts are taken off one at a
  time, greedily: of the movable shifts the violations involve (and, for one day off in seven, whole
  days of them), the one whose removal leaves the fewest future violations of that resident, then the
  least excess, then the latest start (the least disruptive to move) goes first, until none are left
  or no removal helps.
* Each removed shift goes to a cover: a resident who has nothing overlapping it and for whom taking it
  adds no future violation (PGY-1 supervision included) and keeps the ISO week under the warning
  threshold; same PGY level first, then more senior, then junior; the fewest hours that week wins.
  Covers already given in the plan count for the next ones. With no such resident the change is a
  removal without cover, which needs a person's decision (``needs_decision``).
* A PGY-1 supervision gap gets a faculty member who is free for the whole of the gap's shifts.
* A resident approaching the weekly threshold gets the latest upcoming shifts of the week moved until
  the week is under it.

The whole plan is then checked once more on the full schedule: ``after`` gives the future violations
left and any new one, so a plan that trades one violation for another is visible before anyone applies it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import (
    US_PER_HOUR,
    Calendar,
    ScheduleError,
    burden,
    check,
    load_timezone,
    parse_instant,
    resolve_as_of,
)

MAX_MOVES_PER_PERSON = 12
# Rules judged per person; supervision depends on faculty and is planned separately.
PERSONAL_RULES = ("weekly_80h_avg4w", "one_day_off_in_7", "continuous_24h_plus4", "rest_14h_after_24h_call",
                  "rest_8h_between_shifts", "call_q3_avg4w")
COVERABLE_KINDS = ("work", "call", "home_call")  # moonlighting is the resident's own job: dropped, never covered


class _Schedule:
    """The working copy a plan edits: shifts by id and by person, with instants in microseconds."""

    def __init__(self, shifts: list[dict[str, Any]], people: list[dict[str, Any]], tz):
        self.tz = tz
        self.calendar = Calendar(tz)
        self.people = {str(p["id"]): p for p in people}
        self.shifts: dict[Any, dict[str, Any]] = {}
        self.span: dict[Any, tuple[int, int]] = {}
        self.by_person: dict[str, list[Any]] = {key: [] for key in self.people}
        for index, raw in enumerate(shifts):
            shift = dict(raw)
            shift.setdefault("id", index)
            ref = shift["id"]
            if ref in self.shifts:
                raise ScheduleError(f"shifts[{index}].id: {ref!r} is used twice; a plan needs unique shift ids")
            key = str(shift.get("person_id"))
            if key not in self.people:
                raise ScheduleError(f"shifts[{index}].person_id: unknown person {shift.get('person_id')!r} (not in people)")
            self.shifts[ref] = shift
            self.span[ref] = (parse_instant(shift["start"], f"shifts[{index}].start", tz), parse_instant(shift["end"], f"shifts[{index}].end", tz))
            self.by_person[key].append(ref)

    def of(self, key: str) -> list[dict[str, Any]]:
        return [self.shifts[ref] for ref in self.by_person[key]]

    def move(self, ref: Any, to_key: str | None) -> None:
        shift = self.shifts[ref]
        self.by_person[str(shift["person_id"])].remove(ref)
        if to_key is None:
            del self.shifts[ref]
            return
        shift["person_id"] = self.people[to_key]["id"]
        self.by_person[to_key].append(ref)

    def add(self, ref: Any, shift: dict[str, Any], span: tuple[int, int]) -> None:
        self.shifts[ref] = shift
        self.span[ref] = span
        self.by_person[str(shift["person_id"])].append(ref)

    def busy(self, key: str, start: int, end: int) -> bool:
        return any(self.span[r][0] < end and self.span[r][1] > start for r in self.by_person[key])

    def hours_in(self, key: str, start: int, end: int) -> float:
        total = 0
        for ref in self.by_person[key]:
            if self.shifts[ref]["kind"] == "home_call" and not self.shifts[ref].get("worked"):
                continue
            s, e = self.span[ref]
            total += max(0, min(e, end) - max(s, start))
        return total / US_PER_HOUR

    def faculty_shifts(self) -> list[dict[str, Any]]:
        return [s for key, p in self.people.items() if p.get("type") == "faculty" for s in self.of(key)]


class _Judge:
    """Runs the real rules on a few people at a time."""

    def __init__(self, schedule: _Schedule, as_of: Any, timezone: str | None, rules: list[str], now: float | None):
        self.schedule = schedule
        self.as_of = as_of
        self.timezone = timezone
        self.rules = rules
        self.now = now

    def future(self, keys: list[str], rules: list[str] | None = None) -> list[dict[str, Any]]:
        rules = [r for r in (rules or self.rules) if r in self.rules]
        people = [self.schedule.people[k] for k in keys]
        if not any(p.get("type") == "resident" and p.get("pgy_level") == 1 for p in people):
            rules = [r for r in rules if r != "pgy1_supervision"]  # faculty only matter to a PGY-1
        if not rules:
            return []
        shifts = [s for k in keys for s in self.schedule.of(k)]
        if "pgy1_supervision" in rules:
            wanted = set(keys)
            extra = [k for k, p in self.schedule.people.items() if p.get("type") == "faculty" and k not in wanted]
            people += [self.schedule.people[k] for k in extra]
            shifts += [s for k in extra for s in self.schedule.of(k)]
        report = check(shifts, people, as_of=self.as_of, timezone=self.timezone, rules=rules, now=self.now)
        return [v for v in report["violations"] if v["status"] == "future" and str(v["person_id"]) in keys]


def _score(violations: list[dict[str, Any]]) -> tuple[int, float, float]:
    """Fewer violations, then less excess (rounded: float noise must not decide a ranking), then shorter ones."""
    count, excess, span = burden(violations)
    return count, round(excess, 4), span


def _iso_week(schedule: _Schedule, start_us: int) -> tuple[int, int]:
    calendar = schedule.calendar
    day = calendar.day_of(start_us)
    monday = day - date.fromordinal(day).weekday()
    return calendar.day_start(monday), calendar.day_start(monday + 7)


def _describe(schedule: _Schedule, ref: Any) -> dict[str, Any]:
    shift = schedule.shifts[ref]
    person = schedule.people[str(shift["person_id"])]
    return {"shift_id": ref, "person_id": person["id"], "person_name": person.get("name"), "kind": shift["kind"],
            "start": _iso(shift["start"]), "end": _iso(shift["end"])}


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class Planner:
    # pylint: disable=too-many-instance-attributes
    def __init__(self, shifts: Any, people: Any, as_of: Any = None, timezone: str | None = None, rules: list[str] | None = None,
                 weekly_hours_warning: float = 75, assignments: dict[Any, dict[str, Any]] | None = None, now: float | None = None):
        self.timezone = timezone
        tz = load_timezone(timezone)
        self.now = now
        self.as_of_us = resolve_as_of(as_of, tz, now)
        self.as_of = as_of
        self.threshold = weekly_hours_warning
        # Validates everything (and names the bad field) before any planning.
        self.before = check(shifts, people, as_of=as_of, timezone=timezone, rules=rules,
                            weekly_hours_warning=weekly_hours_warning, now=now)
        self.rules = list(self.before["summary"]["rules"])
        self.schedule = _Schedule(shifts or [], people or [], tz)
        self.judge = _Judge(self.schedule, as_of, timezone, self.rules, now)
        self.assignments = assignments or {}
        self.changes: list[dict[str, Any]] = []
        self.proposals: list[dict[str, Any]] = []
        self._new_ids = 0

    def movable(self, ref: Any) -> bool:
        return ref in self.schedule.shifts and self.schedule.span[ref][0] >= self.as_of_us

    # -- violations of one resident -------------------------------------------------------------
    def relieve(self, key: str, violations: list[dict[str, Any]], reason: str) -> dict[str, Any]:
        rules = sorted({v["rule"] for v in violations})
        current = self.judge.future([key], rules)
        moved: list[Any] = []
        while current and len(moved) < MAX_MOVES_PER_PERSON:
            units = self._units(key, current)
            best = None
            for unit in units:
                saved = [(ref, self.schedule.shifts[ref]) for ref in unit]
                for ref in unit:
                    self.schedule.move(ref, None)
                after = self.judge.future([key], rules)
                for ref, shift in saved:
                    self.schedule.add(ref, shift, self.schedule.span[ref])
                latest = max(self.schedule.span[ref][0] for ref in unit)
                rank = (_score(after), -latest, len(unit))
                if best is None or rank < best[0]:
                    best = (rank, unit, after)
            if best is None or best[0][0] >= _score(current):
                break
            for ref in best[1]:
                moved.append(ref)
                self._hand_over(ref, reason)
            current = best[2]
        person = self.schedule.people[key]
        return {"person_id": person["id"], "person_name": person.get("name"), "pgy_level": person.get("pgy_level"), "reason": reason,
                "rules": rules, "violations": violations, "moved_shift_ids": moved, "resolved": not current,
                "remaining": current}

    def _units(self, key: str, current: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        involved = []
        for violation in current:
            involved.extend(ref for ref in violation["shift_ids"] if self.movable(ref) and ref in self.schedule.by_person[key])
        units: list[tuple[Any, ...]] = [(ref,) for ref in dict.fromkeys(involved)]
        if any(v["rule"] == "one_day_off_in_7" for v in current):
            # A free day needs every shift of that day moved: offer whole days of movable shifts.
            days: dict[int, list[Any]] = {}
            fixed: set[int] = set()
            calendar = self.schedule.calendar
            for ref in self.schedule.by_person[key]:
                start, end = self.schedule.span[ref]
                for day in range(calendar.day_of(start), calendar.day_of(end - 1) + 1):
                    if self.movable(ref):
                        days.setdefault(day, []).append(ref)
                    else:
                        fixed.add(day)
            units.extend(tuple(refs) for day, refs in sorted(days.items()) if day not in fixed and len(refs) > 1)
        return units

    def _hand_over(self, ref: Any, reason: str) -> None:
        """Give shift ``ref`` (still on its owner's schedule) to a compliant cover, or drop it (needs a decision)."""
        shift = self.schedule.shifts[ref]
        span = self.schedule.span[ref]
        from_key = str(shift["person_id"])
        self.schedule.move(ref, None)
        cover = self._find_cover(from_key, shift, span) if shift["kind"] in COVERABLE_KINDS else None
        change = {"action": "reassign" if cover else "remove", "assignment_id": ref, "from_person_id": self.schedule.people[from_key]["id"],
                  "to_person_id": None, "kind": shift["kind"], "start": _iso(shift["start"]), "end": _iso(shift["end"]), "reason": reason,
                  "needs_decision": cover is None}
        change.update(self._block(ref))
        if cover:
            moved = dict(shift, person_id=self.schedule.people[cover]["id"])
            self.schedule.add(ref, moved, span)
            change["to_person_id"] = self.schedule.people[cover]["id"]
            change["to_person_name"] = self.schedule.people[cover].get("name")
        self.changes.append(change)

    def _block(self, ref: Any) -> dict[str, Any]:
        meta = self.assignments.get(ref)
        return {"block_id": meta.get("block_id"), "date": _iso(meta.get("date")), "time_of_day": meta.get("time_of_day")} if meta else {}

    def _find_cover(self, from_key: str, shift: dict[str, Any], span: tuple[int, int]) -> str | None:
        level = self.schedule.people[from_key].get("pgy_level") or 0
        week = _iso_week(self.schedule, span[0])
        candidates = []
        for key, person in self.schedule.people.items():
            if key == from_key or person.get("type") != "resident" or self.schedule.busy(key, *span):
                continue
            pgy = person.get("pgy_level") or 0
            order = 0 if pgy == level else 1 if pgy > level else 2
            candidates.append((order, self.schedule.hours_in(key, *week), str(person["id"]), key))
        hours = (span[1] - span[0]) / US_PER_HOUR
        for _order, week_hours, _id, key in sorted(candidates):
            if shift["kind"] != "home_call" and week_hours + hours >= self.threshold:
                continue
            before = self.judge.future([key])
            ref = ("cover", self._new_ids)
            self._new_ids += 1
            trial = dict(shift, person_id=self.schedule.people[key]["id"], id=ref)
            self.schedule.add(ref, trial, span)
            after = self.judge.future([key])
            self.schedule.move(ref, None)
            if _keys(after) <= _keys(before) and _score(after) <= _score(before):
                return key
        return None

    # -- PGY-1 supervision gaps -----------------------------------------------------------------
    def supervise(self, violation: dict[str, Any]) -> dict[str, Any]:
        refs = [ref for ref in violation["shift_ids"] if ref in self.schedule.shifts]
        added = []
        for ref in refs:
            span = self.schedule.span[ref]
            if span[0] < self.as_of_us:
                continue
            week = _iso_week(self.schedule, span[0])
            free = sorted((self.schedule.hours_in(k, *week), str(p["id"]), k) for k, p in self.schedule.people.items()
                          if p.get("type") == "faculty" and not self.schedule.busy(k, *span))
            if not free:
                continue
            key = free[0][2]
            new_ref = ("supervision", self._new_ids)
            self._new_ids += 1
            shift = self.schedule.shifts[ref]
            self.schedule.add(new_ref, {"id": new_ref, "person_id": self.schedule.people[key]["id"], "start": shift["start"],
                                        "end": shift["end"], "kind": "work"}, span)
            change = {"action": "add", "assignment_id": None, "person_id": self.schedule.people[key]["id"],
                      "person_name": self.schedule.people[key].get("name"), "role": "supervising", "kind": "work",
                      "start": _iso(shift["start"]), "end": _iso(shift["end"]), "supervises_shift_id": ref,
                      "reason": "pgy1_supervision", "needs_decision": False}
            change.update(self._block(ref))
            self.changes.append(change)
            added.append(change)
        key = str(violation["person_id"])
        remaining = [v for v in self.judge.future([key], ["pgy1_supervision"])
                     if v["start"] < violation["end"] and v["end"] > violation["start"]]
        return {"person_id": violation["person_id"], "person_name": violation.get("person_name"), "pgy_level": violation.get("pgy_level"),
                "reason": "violation", "rules": ["pgy1_supervision"], "violations": [violation], "added_supervisors": added,
                "resolved": not remaining, "remaining": remaining}

    # -- residents approaching the weekly threshold ---------------------------------------------
    def lighten(self, entry: dict[str, Any]) -> dict[str, Any]:
        key = str(entry["person_id"])
        moved = []
        refs = [r for r in entry["upcoming_shift_ids"] if self.movable(r) and r in self.schedule.by_person[key]]
        week = None
        for ref in sorted(refs, key=lambda r: -self.schedule.span[r][0]):
            week = week or _iso_week(self.schedule, self.schedule.span[ref][0])
            if self.schedule.hours_in(key, *week) < self.threshold:
                break
            moved.append(ref)
            self._hand_over(ref, "approaching")
        hours_now = self.schedule.hours_in(key, *week) if week else entry["hours"]
        return {"person_id": entry["person_id"], "person_name": entry.get("name"), "pgy_level": entry.get("pgy_level"), "reason": "approaching",
                "rules": ["weekly_hours_warning"], "week": entry.get("week"), "hours_before": entry["hours"], "hours_after": round(hours_now, 4),
                "moved_shift_ids": moved, "resolved": hours_now < self.threshold, "remaining": []}

    def run(self) -> dict[str, Any]:
        future = [v for v in self.before["violations"] if v["status"] == "future"]
        by_person: dict[str, list[dict[str, Any]]] = {}
        for violation in future:
            if violation["rule"] != "pgy1_supervision":
                by_person.setdefault(str(violation["person_id"]), []).append(violation)
        for key, violations in by_person.items():
            self.proposals.append(self.relieve(key, violations, "violation"))
        for violation in future:
            if violation["rule"] == "pgy1_supervision":
                self.proposals.append(self.supervise(violation))
        this_week = _iso_week(self.schedule, self.as_of_us)
        for entry in self.before["approaching"]:
            if self.schedule.hours_in(str(entry["person_id"]), *this_week) >= self.threshold:  # moves made for a violation may have done it
                self.proposals.append(self.lighten(entry))
        return self.result()

    def result(self) -> dict[str, Any]:
        shifts = list(self.schedule.shifts.values())
        people = list(self.schedule.people.values())
        after = check(shifts, people, as_of=self.as_of, timezone=self.timezone, rules=self.rules,
                      weekly_hours_warning=self.threshold, now=self.now)
        before_keys = _keys([v for v in self.before["violations"] if v["status"] == "future"])
        after_future = [v for v in after["violations"] if v["status"] == "future"]
        new = [v for v in after_future if (v["rule"], str(v["person_id"])) not in before_keys]
        return {
            "proposals": self.proposals,
            "changes": self.changes,
            "needs_decision": [c for c in self.changes if c["needs_decision"]],
            "before": {"future_violations": sum(1 for v in self.before["violations"] if v["status"] == "future"),
                       "historical_violations": sum(1 for v in self.before["violations"] if v["status"] == "historical"),
                       "approaching": len(self.before["approaching"])},
            "after": {"future_violations": len(after_future), "new_violations": new, "remaining": after_future,
                      "approaching": len(after["approaching"])},
            "historical": [v for v in self.before["violations"] if v["status"] == "historical"],
            "resolved": not after_future and not new,
        }


def _keys(violations: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(v["rule"], str(v["person_id"])) for v in violations}


def plan(shifts: Any, people: Any, as_of: Any = None, timezone: str | None = None, rules: list[str] | None = None,
         weekly_hours_warning: float = 75, assignments: dict[Any, dict[str, Any]] | None = None, now: float | None = None) -> dict[str, Any]:
    """Propose the schedule changes that prevent the future violations; see the module docstring."""
    return Planner(shifts, people, as_of, timezone, rules, weekly_hours_warning, assignments, now).run()
