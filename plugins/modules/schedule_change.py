#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: schedule_change
short_description: Reassign, remove or add Residency Scheduler assignments and log ACGME overrides, verified and all or nothing
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - The ACGME runbook resolutions "modify schedule to prevent violation", "find coverage for upcoming shifts" and "log override with
    justification if unavoidable", on the scheduler's C(assignments) table.
  - Applies O(changes) (as M(sre.runbooks.acgme_coverage) returns them) in one transaction. Each named assignment is locked first;
    a change whose premise no longer holds (the assignment belongs to someone else than C(from_person_id)) fails the whole run.
  - With O(verify) (the default) the ACGME rules run on the schedule before and after the changes, inside the transaction; when a
    future violation appears or gets worse, everything is rolled back and the module fails naming it.
  - Writes one C(audit_log) row per change (action C(schedule_change.<action>), before and after, O(reason), O(incident_id)) when the
    schema has that table.
  - Idempotent; a reassignment already done, a removal already gone, a supervisor already assigned or an override already logged with
    the same reason report C(changed=false).
  - Check mode does all of it, verification included, and rolls back; with C(--diff) it shows each assignment before and after.
extends_documentation_fragment:
  - sre.runbooks.acgme_schedule
  - sre.runbooks.postgres
options:
  changes:
    description:
      - The changes, applied in order. C(action) is one of
        V(reassign) (C(assignment_id), C(from_person_id), C(to_person_id)),
        V(remove) (C(assignment_id), C(from_person_id); needs O(allow_uncovered)),
        V(add) (C(block_id), C(person_id), C(role) V(primary), V(supervising) (default) or V(backup)) and
        V(override) (C(assignment_id), C(override_reason), else O(reason)).
      - The informative fields M(sre.runbooks.acgme_coverage) adds (C(kind), C(start), C(end), C(reason), C(needs_decision), ...) are
        accepted and ignored; any other field is an error.
    type: list
    elements: dict
    required: true
  reason:
    description: Why; goes into the audit log and is the override justification when a change has none.
    type: str
    required: true
  incident_id:
    description: The incident the changes belong to, recorded in the audit log.
    type: str
  allow_uncovered:
    description: Allow V(remove) changes, which leave a shift with nobody. Set only after a person decided so.
    type: bool
    default: false
  verify:
    description: Re-check the ACGME rules before committing (reads the schedule with the mapping options).
    type: bool
    default: true
  allow_new_violations:
    description: Commit even when verification finds a future violation created or made worse. For an unavoidable override only.
    type: bool
    default: false
notes:
  - O(timezone) is required with O(verify=true). O(date_from) should reach 27 days before the changed shifts.
seealso:
  - module: sre.runbooks.acgme_coverage
  - module: sre.runbooks.acgme_compliance
"""

EXAMPLES = r"""
- name: Hand Tuesday's shift to a resident who stays compliant
  sre.runbooks.schedule_change:
    host: db1.example.org
    user: scheduler
    password: "{{ vault_scheduler_db_password }}"
    db: residency_scheduler
    timezone: America/New_York
    changes:
      - {action: reassign, assignment_id: 4312, from_person_id: 7, to_person_id: 11}
    reason: Prevent a 1-in-7 violation for resident 7
    incident_id: ACGMEViolationDetected-20261123T101500Z

- name: Log an unavoidable override with its justification
  sre.runbooks.schedule_change:
    host: db1.example.org
    user: scheduler
    password: "{{ vault_scheduler_db_password }}"
    db: residency_scheduler
    timezone: America/New_York
    changes:
      - {action: override, assignment_id: 4312}
    reason: Mass-casualty event; no other resident credentialed for the unit. PD approved.
    allow_new_violations: true
"""

RETURN = r"""
results:
  description: Per change, C(action), C(assignment_id), C(changed), C(before) and C(after) (the assignment row, null when absent) and C(note).
  returned: success
  type: list
  elements: dict
verification:
  description:
    - With O(verify), C(future_before) and C(future_after) (future violations), C(prevented) (rule and person no longer in violation) and
      C(new_or_worse).
  returned: when O(verify=true)
  type: dict
"""

import json

from ansible_collections.sre.runbooks.plugins.module_utils._acgme import PostgresMapping, source_argument_spec
from ansible_collections.sre.runbooks.plugins.module_utils._postgres import PostgresError, PostgresModule
from ansible_collections.sre.runbooks.plugins.module_utils._schedule_change import ChangeError, run, validate


def main() -> None:
    spec = source_argument_spec()
    for name in ("source", "shifts", "people"):
        del spec[name]
    spec.update({
        "changes": {"type": "list", "elements": "dict", "required": True},
        "reason": {"type": "str", "required": True},
        "incident_id": {"type": "str"},
        "allow_uncovered": {"type": "bool", "default": False},
        "verify": {"type": "bool", "default": True},
        "allow_new_violations": {"type": "bool", "default": False},
    })
    module = PostgresModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    if not params["reason"].strip():
        module.fail_json(msg="reason: must say why the schedule changes")
    try:
        items = validate(params["changes"], params["allow_uncovered"], params["reason"])
        mapping = None
        if params["verify"]:
            mapping = PostgresMapping(params["timezone"], params["block_hours"], params["assignment_rules"], params["date_from"],
                                      params["date_to"], params["db_schema"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    conn = module.connect(read_only=False)
    try:
        result = run(conn, items, params, mapping, module.check_mode)
    except ChangeError as exc:
        module.fail_json(msg=str(exc), **getattr(exc, "result", {}))
    except PostgresError as exc:
        module.fail_postgres(exc)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    finally:
        conn.close()
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = {"before": json.dumps([r["before"] for r in result["results"]], indent=2, sort_keys=True) + "\n",
                          "after": json.dumps([r["after"] for r in result["results"]], indent=2, sort_keys=True) + "\n"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
