#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: acgme_compliance
short_description: ACGME duty-hour and supervision violations of a residency schedule
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Answers the ACGMEViolationDetected, RepeatedACGMEViolations and WorkHourThresholdApproaching runbook steps
    "identify violation type, affected person, historical or future" and "calculate exact hours for the current week,
    check scheduled future shifts".
  - Checks seven rules of the ACGME Common Program Requirements (section VI.F) for residents; faculty are never flagged.
    V(weekly_80h_avg4w) more than 80 h a week averaged over any rolling 28-day window;
    V(one_day_off_in_7) fewer than 4 free calendar days in any rolling 28-day window;
    V(continuous_24h_plus4) a continuous work period (touching or overlapping shifts merged) longer than 28 h;
    V(rest_14h_after_24h_call) less than 14 h free after a continuous period of 24 h or more;
    V(rest_8h_between_shifts) less than 8 h between two work periods;
    V(call_q3_avg4w) more than 9 in-house call periods starting in any rolling 28-day window;
    V(pgy1_supervision) a moment of a PGY-1 resident's work or in-house call not covered by any faculty member's work or in-house call.
  - Durations are real elapsed time (a 07:00 to 07:00 call across a DST change lasts 23 or 25 h); calendar days and ISO weeks are
    those of O(timezone). A 28-day window starts at local midnight of every day; consecutive windows breaking a rule are reported
    once, with the worst window's value. The full definitions are in the collection's C(docs/modules/acgme_compliance.md).
  - The schedule comes either from O(shifts) and O(people), or from the Residency Scheduler's PostgreSQL database (O(source=postgres)),
    namely C(people), C(blocks) (AM/PM half-days) and C(assignments), with C(rotation_templates); O(block_hours) and O(assignment_rules) turn
    half-day blocks into clock hours and shift kinds.
  - Read-only; never changes anything and runs fully in check mode.
extends_documentation_fragment:
  - sre.runbooks.acgme_schedule
  - sre.runbooks.acgme_schedule.source
  - sre.runbooks.postgres
options:
  include_hours:
    description: Return RV(hours) (per person and ISO week; large for a whole year). The busiest resident's worst 28-day average is in RV(summary) either way.
    type: bool
    default: true
notes:
  - Every rule is a resident rule; faculty appear in RV(hours) and give PGY-1 supervision coverage, never in RV(violations).
  - Days and hours outside the data count as free. The module never invents hours, so a window cut by the start of the data can only
    under-report; read at least 27 days before the period of interest.
  - With O(source=shifts) the connection options are ignored.
seealso:
  - name: ACGME Common Program Requirements (Residency), section VI.F
    description: Clinical experience and education (duty hours) and supervision requirements.
    link: https://www.acgme.org/programs-and-institutions/programs/common-program-requirements/
"""

EXAMPLES = r"""
- name: Check the scheduler's schedule from its database
  sre.runbooks.acgme_compliance:
    source: postgres
    host: 127.0.0.1
    user: scheduler
    password: "{{ scheduler_db_password }}"
    database: residency_scheduler
    timezone: America/New_York
    date_from: "2026-01-05"
  register: acgme

- name: Only future (still preventable) violations
  ansible.builtin.debug:
    msg: "{{ acgme.violations | selectattr('status', 'equalto', 'future') | list }}"

- name: Check a schedule given as shifts, with a home call that was worked
  sre.runbooks.acgme_compliance:
    timezone: America/New_York
    as_of: "2026-03-09T12:00:00-04:00"
    rules: [continuous_24h_plus4, rest_14h_after_24h_call]
    people:
      - {id: 7, name: Avery Mensah, type: resident, pgy_level: 1}
      - {id: 21, name: Dr. Elena Marquez, type: faculty}
    shifts:
      - {person_id: 7, start: "2026-03-07T07:00:00", end: "2026-03-08T07:00:00", kind: call}
      - {person_id: 7, start: "2026-03-08T20:00:00", end: "2026-03-08T23:00:00", kind: home_call, worked: true}
      - {person_id: 21, start: "2026-03-07T07:00:00", end: "2026-03-08T07:00:00", kind: call}
  register: acgme_shifts

- name: Lab mapping where the call team is marked by the assignment role
  sre.runbooks.acgme_compliance:
    source: postgres
    database: residency_scheduler
    timezone: America/New_York
    block_hours: {AM: "07:00-12:00", PM: "12:00-17:00"}
    assignment_rules:
      - match: {role: backup, is_weekend: true}
        kind: home_call
      - match: {rotation_name: Night Float}
        kind: work
        hours: "19:00-07:00"
  register: acgme_lab
"""

RETURN = r"""
violations:
  description: One entry per violation, sorted by start.
  returned: always
  type: list
  elements: dict
  contains:
    rule:
      description: The rule broken.
      type: str
      sample: continuous_24h_plus4
    person_id:
      description: The resident's id, as given in O(people) (or C(people.id) with O(source=postgres)).
      type: raw
      sample: 7
    person_name:
      description: The resident's name.
      type: str
    pgy_level:
      description: The resident's PGY level.
      type: int
    start:
      description:
        - Start of the problem (ISO 8601 in O(timezone)); for the window rules the start of the first breaking 28-day window.
      type: str
      sample: "2026-03-07T07:00:00-05:00"
    end:
      description:
        - End of the problem; for the window rules the end of the last counted work in the breaking windows, after which none of
          them can change.
      type: str
    value:
      description: The measured figure (hours a week, free days, hours, hours of rest, call count or uncovered hours).
      type: float
      sample: 28.0167
    limit:
      description: The rule's limit in the same unit.
      type: float
      sample: 28
    status:
      description: V(historical) when RV(violations[].end) is at or before O(as_of), else V(future) (still preventable).
      type: str
      sample: historical
    detail:
      description: The violation in words.
      type: str
    window:
      description: For the window rules, C(start) and C(end) of the worst 28-day window; null otherwise.
      type: dict
    shift_ids:
      description:
        - The shifts involved, by their C(id) in O(shifts), else their position in the list; assignment ids with O(source=postgres).
      type: list
      elements: raw
hours:
  description:
    - Per person (residents and faculty), C(total_hours), C(weeks) (ISO week, its Monday, C(hours), C(avg_4w) = the average of that week
      and the three before), C(max_avg_4w) (the worst 28-day window the 80-hour rule compares) and C(max_avg_4w_window).
    - Empty when O(include_hours=false).
  returned: always
  type: list
  elements: dict
approaching:
  description:
    - Residents whose hours in the ISO week of O(as_of) (C(worked_hours) before it plus C(scheduled_hours) after it) reach
      O(weekly_hours_warning), with C(avg_4w) and C(upcoming_shift_ids), the shifts not yet finished that could be covered.
  returned: always
  type: list
  elements: dict
summary:
  description:
    - Counts (people, shifts, violations by rule, historical and future, by person), the rules checked, O(as_of), the time zone,
      C(compliant), and C(max_resident_avg_4w), the busiest resident's worst 28-day average.
  returned: always
  type: dict
normalisations:
  description: Normalisations applied, such as overlapping shifts merged; each is also a warning of the task.
  returned: always
  type: list
  elements: str
source:
  description: With O(source=postgres), what was read (assignments, ignored assignments, shifts, people, date range, optional columns missing).
  returned: when O(source=postgres)
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import check, read_schedule, source_argument_spec
from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError


def main() -> None:
    spec = source_argument_spec()
    spec["include_hours"] = {"type": "bool", "default": True}
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_if=[("source", "shifts", ("people",))])
    params = module.params
    result: dict = {"changed": False}
    try:
        schedule = read_schedule(params)
        if schedule["source"] is not None:
            result["source"] = schedule["source"]
        report = check(schedule["shifts"], schedule["people"], as_of=params["as_of"], timezone=params["timezone"], rules=params["rules"],
                       weekly_hours_warning=params["weekly_hours_warning"])
    except PostgresError as exc:
        failure = {"msg": str(exc)}
        if exc.option:
            failure["option"] = exc.option
        module.fail_json(**failure)
    except ValueError as exc:  # ScheduleError and option parsing: the message names the option or the shift
        module.fail_json(msg=str(exc))
    if not params["include_hours"]:
        report["hours"] = []
    # "warnings" is Ansible's own result key: these go through module.warn and stay readable as data.
    report["normalisations"] = report.pop("warnings")
    for warning in report["normalisations"]:
        module.warn(warning)
    result.update(report)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
