#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: incident
short_description: Open, join, update and resolve an incident record
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Keeps the record every runbook run leaves behind, one directory per incident holding C(incident.json)
    (alert, severity, status, timeline, findings, decision, actions, notifications, escalations, follow-ups,
    what could not be checked), C(report.md) written for a person following the runbook's documentation
    requirements, and C(report.html), a self-contained page with the timeline and the key metric as a chart.
  - The C(sre.runbooks.incident_timeline) callback adds every task of the run to C(timeline.jsonl) in the same
    directory; both reports show it.
  - O(state=open) joins the newest open incident with the same O(dedup_key), so a second run for the
    same alert adds to the record instead of opening another one.
  - Every write is atomic and serialised with a lock, so a run stopped at any point leaves a readable
    record, and two runs for the same alert do not lose each other's findings.
  - Runs on the controller (delegate it to localhost). The record is documentation, not a change to the
    systems under investigation, so the C(sre.runbooks.incident) role writes it in check mode too.
options:
  state:
    description:
      - V(open) opens a new incident or joins the open one with the same O(dedup_key).
      - V(present) folds O(findings), O(decision), O(actions), O(unchecked), O(next_steps), O(events), O(status) and the other
        record options into the record at O(path).
      - V(resolved) marks the incident resolved (and records the resolution time).
    type: str
    choices: [open, present, resolved]
    default: present
  incident_dir:
    description: Directory holding one sub-directory per incident. Required with O(state=open).
    type: path
  path:
    description: The incident's directory, as returned by O(state=open). Required unless O(state=open).
    type: path
  alert_name:
    description: The alert (or runbook procedure) that started the run. Required with O(state=open).
    type: str
  dedup_key:
    description:
      - Identifies "the same incident" across runs, for example the Alertmanager fingerprint.
      - Defaults to O(alert_name).
    type: str
  severity:
    description:
      - Severity as the runbook names it (V(critical), V(warning), V(info), V(sev1) to V(sev4), or V(1) to V(4)), in any case.
      - With O(state=open) a new incident gets V(warning) when this is not set; otherwise the severity is only changed when set.
    type: str
  alert:
    description: The alert as delivered (labels, annotations, startsAt, fingerprint); kept in the record.
    type: dict
    default: {}
  runbook:
    description: Which runbook section the run follows; shown in the report.
    type: str
    default: ""
  title:
    description: Report title; defaults to O(alert_name).
    type: str
  run_id:
    description: Identifier of this run (recorded in the record's C(runs)).
    type: str
    default: ""
  remediate:
    description: Whether this run may remediate; recorded so the report can say "investigation only".
    type: bool
    default: false
  kind:
    description:
      - Which documentation requirements the report follows; only used when a new incident is opened.
      - V(alert) is the alert runbook's general process, V(acgme) its ACGME violation documentation,
        V(ml) the ML incident runbook's post-incident documentation.
    type: str
    choices: [alert, acgme, ml]
    default: alert
  acknowledged:
    description: Note the acknowledgement time (the first one is kept).
    type: bool
    default: false
  escalations:
    description: Escalations made, each a dict with C(time), C(level), C(contact), C(path) and C(reason).
    type: list
    elements: dict
  notifications:
    description:
      - Notifications to add to the record, each a dict as the C(sre.runbooks.notify) module records them (C(time),
        C(channel), C(event), C(template), C(status), C(attempts), C(detail) or C(error)); the role records deliveries
        to channels that are not configured this way, as V(skipped).
    type: list
    elements: dict
  documentation:
    description:
      - What the runbook asks to document, merged into the record, for example C(root_cause), C(lessons_learned),
        C(recovery_steps), C(violation_details), C(affected_person), C(justification), C(corrective_action),
        C(program_director_notification), C(tickets), C(post_mortem).
    type: dict
  assessment:
    description: The severity assessment's inputs (user impact, degraded or down, affected users, facts), merged.
    type: dict
  severity_reasons:
    description: Why the severity is what it is; replaces the previous list.
    type: list
    elements: str
  issue_type:
    description: The escalation table's issue type (V(application), V(database), V(security), V(compliance), ...).
    type: str
  metric:
    description:
      - The key metric around the incident, drawn in C(report.html) as a chart. A dict with C(name), C(series)
        (a list of C([iso_time, value]) pairs), optional C(threshold), C(percent) and C(markers)
        (each C(time), C(label), C(kind)); incident start, remediations and resolution are marked automatically.
    type: dict
  findings:
    description:
      - Evidence gathered, each a dict with C(title), optional C(host), C(summary), and C(table) (C(columns), C(rows)).
    type: list
    elements: dict
  decision:
    description: The runbook's decision points and their answers, merged into the record.
    type: dict
  actions:
    description: Remediations carried out, each a dict with C(action), C(host), C(result) and C(time).
    type: list
    elements: dict
  unchecked:
    description: What could not be checked, each a dict with C(what), optional C(host), and C(reason).
    type: list
    elements: dict
  next_steps:
    description: What a person should do next; replaces the previous list.
    type: list
    elements: str
  follow_ups:
    description: Follow-up work (post-mortem, tickets).
    type: list
    elements: str
  events:
    description: Timeline entries, each a dict with C(event) and C(detail); the module stamps the time.
    type: list
    elements: dict
  status:
    description: New status of the incident.
    type: str
    choices: [open, acknowledged, investigating, identified, mitigating, resolved, closed]
  summary:
    description: One-paragraph summary shown at the top of the report.
    type: str
  severity_info:
    description: What the severity means for response (time, channels); shown in the report header.
    type: str
attributes:
  check_mode:
    support: full
    description: In check mode nothing is written and the returned record shows what would be.
"""

EXAMPLES = r"""
- name: Open or join the incident for this alert
  sre.runbooks.incident:
    state: open
    incident_dir: "{{ playbook_dir }}/incidents"
    alert_name: HighErrorRate
    dedup_key: "{{ alert.fingerprint | default('HighErrorRate') }}"
    severity: critical
  delegate_to: localhost
  register: opened

- name: Record a finding
  sre.runbooks.incident:
    path: "{{ opened.path }}"
    findings:
      - title: Error types in the last hour
        host: app1
        summary: 412 errors, 96% sqlalchemy.exc.OperationalError
        table:
          columns: [count, type, sample]
          rows: [[412, OperationalError, "QueuePool limit of size 10 overflow 20 reached"]]
  delegate_to: localhost
"""

RETURN = r"""
path:
  description: The incident's directory.
  returned: always
  type: str
  sample: /srv/runbooks/incidents/HighErrorRate-20261123T094500Z
id:
  description: The incident's identifier (its directory name).
  returned: always
  type: str
joined:
  description: Whether O(state=open) joined an open incident instead of opening one.
  returned: when O(state=open)
  type: bool
record:
  description: The whole record after the change.
  returned: always
  type: dict
report:
  description: Path of the rendered C(report.md).
  returned: always
  type: str
report_html:
  description: Path of the rendered C(report.html).
  returned: always
  type: str
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._incident import SEVERITIES, IncidentError, open_or_join, update

UPDATE_KEYS = ("findings", "decision", "actions", "unchecked", "next_steps", "follow_ups", "events", "status", "summary",
               "severity", "severity_info", "acknowledged", "escalations", "notifications", "documentation", "assessment", "severity_reasons",
               "issue_type", "metric")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["open", "present", "resolved"], "default": "present"},
            "incident_dir": {"type": "path"},
            "path": {"type": "path"},
            "alert_name": {"type": "str"},
            "dedup_key": {"type": "str", "no_log": False},
            "severity": {"type": "str"},
            "alert": {"type": "dict", "default": {}},
            "runbook": {"type": "str", "default": ""},
            "title": {"type": "str"},
            "run_id": {"type": "str", "default": ""},
            "remediate": {"type": "bool", "default": False},
            "kind": {"type": "str", "choices": ["alert", "acgme", "ml"], "default": "alert"},
            "acknowledged": {"type": "bool", "default": False},
            "escalations": {"type": "list", "elements": "dict"},
            "notifications": {"type": "list", "elements": "dict"},
            "documentation": {"type": "dict"},
            "assessment": {"type": "dict"},
            "severity_reasons": {"type": "list", "elements": "str"},
            "issue_type": {"type": "str"},
            "metric": {"type": "dict"},
            "findings": {"type": "list", "elements": "dict"},
            "decision": {"type": "dict"},
            "actions": {"type": "list", "elements": "dict"},
            "unchecked": {"type": "list", "elements": "dict"},
            "next_steps": {"type": "list", "elements": "str"},
            "follow_ups": {"type": "list", "elements": "str"},
            "events": {"type": "list", "elements": "dict"},
            "status": {"type": "str", "choices": ["open", "acknowledged", "investigating", "identified", "mitigating", "resolved", "closed"]},
            "summary": {"type": "str"},
            "severity_info": {"type": "str"},
        },
        required_if=[("state", "open", ("incident_dir", "alert_name")), ("state", "present", ("path",)), ("state", "resolved", ("path",))],
        supports_check_mode=True,
    )
    params = module.params
    if params["severity"] is not None and params["severity"].strip().lower() not in SEVERITIES:
        module.fail_json(msg=f"severity: expected one of {', '.join(SEVERITIES)}, got {params['severity']!r}; nothing was written")
    try:
        if params["state"] == "open":
            directory, record, joined, changed = open_or_join(
                Path(params["incident_dir"]), params["alert_name"], params["dedup_key"] or params["alert_name"],
                params["severity"] or "warning", params["alert"], params["runbook"], params["title"] or params["alert_name"],
                params["run_id"], params["remediate"], module.check_mode, kind=params["kind"])
            extra = {key: params[key] for key in UPDATE_KEYS if key not in ("severity", "status") and params[key]}
            if extra and not module.check_mode:
                record, _changed_info = update(directory, extra, False)
            module.exit_json(changed=changed, path=str(directory), id=record["id"], joined=joined, record=record,
                             report=str(directory / "report.md"), report_html=str(directory / "report.html"))
        data = {key: params[key] for key in UPDATE_KEYS}
        if params["state"] == "resolved":
            data["status"] = "resolved"
        directory = Path(params["path"])
        record, changed = update(directory, data, module.check_mode)
    except IncidentError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        where = params["incident_dir"] if params["state"] == "open" else params["path"]
        module.fail_json(msg=f"cannot write the incident record under {where}: {exc}")
    module.exit_json(changed=changed, path=str(directory), id=record["id"], record=record, report=str(directory / "report.md"),
                     report_html=str(directory / "report.html"))


if __name__ == "__main__":
    main()
