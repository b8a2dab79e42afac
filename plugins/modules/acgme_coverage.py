#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: acgme_coverage
short_description: Propose the schedule changes that prevent future ACGME violations
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Answers the ACGMEViolationDetected step "if future violation, modify schedule to prevent violation" and the
    WorkHourThresholdApproaching steps "remove non-essential shifts if possible, find coverage for upcoming shifts".
  - Reads the schedule like M(sre.runbooks.acgme_compliance), finds the V(future) violations and the residents approaching
    O(weekly_hours_warning), and proposes which shifts to move and who covers them. Every step re-runs the exact rules.
  - Only shifts that have not started at O(as_of) move. Of the shifts a violation involves, the one whose removal leaves the
    fewest future violations of that resident (then the least excess, then the latest start) goes first, until none are left.
    For one day off in seven whole days are moved.
  - A cover is a resident with nothing overlapping the shift, for whom taking it adds no future violation (PGY-1 supervision
    included) and keeps that ISO week under O(weekly_hours_warning); same PGY level first, then more senior, then junior, fewest
    hours that week first. With no such resident the change is a removal with C(needs_decision=true), for a person to decide.
  - A PGY-1 supervision gap gets the faculty member with the fewest hours that week who is free during the shift.
  - The whole plan is checked again on the full schedule; RV(after) shows what is left and any new violation.
  - Read-only; never changes anything and runs fully in check mode. M(sre.runbooks.schedule_change) applies RV(changes).
extends_documentation_fragment:
  - sre.runbooks.acgme_schedule
  - sre.runbooks.acgme_schedule.source
  - sre.runbooks.postgres
notes:
  - Moonlighting is the resident's own job; it is dropped from the schedule (C(needs_decision)), never covered.
  - Historical violations cannot be prevented; they are returned in RV(historical) for the justification record.
seealso:
  - module: sre.runbooks.acgme_compliance
  - module: sre.runbooks.schedule_change
"""

EXAMPLES = r"""
- name: Propose coverage for the future violations in the scheduler's database
  sre.runbooks.acgme_coverage:
    source: postgres
    host: db1.example.org
    user: scheduler
    password: "{{ vault_scheduler_db_password }}"
    db: residency_scheduler
    timezone: America/New_York
    date_from: "{{ '%Y-%m-%d' | strftime(ansible_date_time.epoch | int - 28 * 86400) }}"
  register: coverage

- name: Apply the covered moves after approval
  sre.runbooks.schedule_change:
    host: db1.example.org
    user: scheduler
    password: "{{ vault_scheduler_db_password }}"
    db: residency_scheduler
    changes: "{{ coverage.changes | rejectattr('needs_decision') | list }}"
    reason: "Prevent ACGME violation (incident {{ incident_id }})"
    timezone: America/New_York
"""

RETURN = r"""
changes:
  description:
    - The proposed changes, in order, each ready for M(sre.runbooks.schedule_change).
    - C(action) V(reassign) moves C(assignment_id) from C(from_person_id) to C(to_person_id); V(remove) takes it off the schedule
      (no compliant cover, C(needs_decision=true)); V(add) gives C(person_id) a C(role=supervising) shift (C(block_id) with
      O(source=postgres)) over C(supervises_shift_id).
    - Each has C(kind), C(start), C(end), C(reason) (V(violation), V(pgy1_supervision) or V(approaching)) and, with
      O(source=postgres), C(block_id), C(date) and C(time_of_day).
  returned: always
  type: list
  elements: dict
needs_decision:
  description: The changes no compliant cover was found for.
  returned: always
  type: list
  elements: dict
proposals:
  description:
    - One entry per resident with future violations (C(reason=violation)), per supervision gap, and per resident still approaching
      the threshold (C(reason=approaching)), with C(person_id), C(person_name), C(rules), C(violations), C(moved_shift_ids) or
      C(added_supervisors), C(resolved) and C(remaining) (the future violations the moves could not prevent).
  returned: always
  type: list
  elements: dict
before:
  description: Counts of future and historical violations and approaching residents before the plan.
  returned: always
  type: dict
after:
  description:
    - The schedule with every change applied, checked again; C(future_violations), C(new_violations) (a rule and person that had
      none before), C(remaining) and C(approaching).
  returned: always
  type: dict
historical:
  description: Violations already past at O(as_of); they need a justification record, not a schedule change.
  returned: always
  type: list
  elements: dict
resolved:
  description: True when the plan leaves no future violation and adds none.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import read_schedule, source_argument_spec
from ansible_collections.sre.runbooks.plugins.module_utils._acgme_plan import plan
from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError


def main() -> None:
    module = AnsibleModule(argument_spec=source_argument_spec(), supports_check_mode=True,
                           required_if=[("source", "shifts", ("people",))])
    params = module.params
    try:
        schedule = read_schedule(params)
        result = plan(schedule["shifts"], schedule["people"], as_of=params["as_of"], timezone=params["timezone"], rules=params["rules"],
                      weekly_hours_warning=params["weekly_hours_warning"], assignments=schedule["assignments"])
    except PostgresError as exc:
        failure = {"msg": str(exc)}
        if exc.option:
            failure["option"] = exc.option
        module.fail_json(**failure)
    except ValueError as exc:  # ScheduleError and option parsing name the option or the shift
        module.fail_json(msg=str(exc))
    if schedule["source"] is not None:
        result["source"] = schedule["source"]
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
