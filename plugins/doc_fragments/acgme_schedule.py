# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a schedule is read and judged (DOCUMENTATION) and where it comes from (SOURCE): shared by the ACGME modules."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  as_of:
    description:
      - The moment that separates V(historical) violations (ending at or before it) from V(future) ones (still preventable), and whose
        ISO week the C(approaching) result looks at. V(now) or an ISO 8601 date and time.
    type: str
    default: now
  timezone:
    description:
      - IANA name of the program's time zone (for example V(America/New_York)) for calendar days, ISO weeks and times without offset.
      - Without it calendar days are UTC days and times without offset are an error. Required when the schedule comes from the database.
    type: str
  rules:
    description: Check only these rules (all when empty).
    type: list
    elements: str
    choices: [weekly_80h_avg4w, one_day_off_in_7, continuous_24h_plus4, rest_14h_after_24h_call, rest_8h_between_shifts, call_q3_avg4w, pgy1_supervision]
  weekly_hours_warning:
    description: A resident whose hours in the ISO week of O(as_of), worked and still scheduled, reach this many is listed in the C(approaching) result.
    type: float
    default: 75
  block_hours:
    description:
      - With the database, the clock hours of each C(blocks.time_of_day) in O(timezone), as V(HH:MM-HH:MM); an end at or before
        the start is on the next day.
      - The default gives 6 h per half-day block, as the lab's scheduler counts them.
    type: dict
    default: {AM: "07:00-13:00", PM: "13:00-19:00"}
  assignment_rules:
    description:
      - With the database, how an assignment becomes a shift. The first rule whose C(match) fits decides; an assignment no rule
        matches is V(work) during its block's O(block_hours).
      - C(match) maps fields to a value or a list of accepted values (strings compared case-insensitively, all fields must fit).
        Fields are C(role), C(activity) (C(activity_override) if set, else the rotation's C(activity_type)), C(activity_type),
        C(activity_override), C(rotation_name), C(rotation_abbreviation), C(time_of_day), C(day_type), C(is_weekend), C(is_holiday).
        A column the schema lacks reads as null.
      - C(kind) is V(work), V(call), V(home_call), V(moonlighting) or V(ignore) (not a shift, such as leave).
      - C(hours) overrides the block's clock hours, either one V(HH:MM-HH:MM) or a mapping per C(time_of_day).
      - C(worked) marks matching V(home_call) assignments as worked.
      - The default makes activity V(call) or V(in_house_call) in-house call (AM 07:00-13:00, PM 13:00 to 07:00 next day),
        V(home_call) home call, and V(leave), V(vacation) or V(off) not a shift.
    type: list
    elements: dict
  date_from:
    description: With the database, read blocks from this date (V(YYYY-MM-DD)) on. Give 27 days of history before the period of interest.
    type: str
  date_to:
    description: With the database, read blocks up to this date (inclusive).
    type: str
  db_schema:
    description: With the database, the PostgreSQL schema holding the scheduler's tables.
    type: str
    default: public
"""

    SOURCE = r"""
options:
  source:
    description:
      - Where the schedule comes from. V(shifts) uses O(shifts) and O(people); V(postgres) reads the scheduler's database with the
        connection options and needs O(timezone).
    type: str
    choices: [shifts, postgres]
    default: shifts
  shifts:
    description:
      - The schedule with O(source=shifts). Each shift has C(person_id), C(start) and C(end) (ISO 8601 date and time; one without a UTC
        offset is read in O(timezone), and is an error when O(timezone) is not set) and C(kind), one of V(work), V(call) (in-house call),
        V(home_call) or V(moonlighting).
      - Optional C(worked) (boolean) says a V(home_call) shift was worked; only then does it count as work (its whole start to end).
        Enter a call-in from home as its own V(home_call) shift with C(worked=true) and its real times.
      - Optional C(id) is returned in C(shift_ids) of a violation instead of the shift's position in the list.
      - Identical duplicates (same person, start, end and kind) are an error; overlapping shifts of one person are merged, counted once
        and listed in C(warnings).
    type: list
    elements: dict
  people:
    description:
      - The people of O(shifts), each with C(id), C(name), C(type) (V(resident) or V(faculty)) and C(pgy_level) (required for residents).
      - Ids are compared as text, so V(1) and V("1") are the same person. Every shift's C(person_id) must be here.
    type: list
    elements: dict
"""
