"""The incident role's message templates say what the runbooks' own templates say, field for field."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import jinja2

from ansible_collections.sre.runbooks.plugins.filter.incident import FilterModule

TEMPLATES = Path(__file__).resolve().parents[3] / "roles" / "incident" / "templates"
RECORD = {"id": "ACGMEViolationDetected-20261123T090000Z", "alert_name": "ACGMEViolationDetected", "title": "ACGME violation",
          "severity": "critical", "status": "investigating", "opened_at": "2026-11-23T09:00:00+00:00",
          "resolved_at": "2026-11-23T10:05:00+00:00", "summary": "84 h in week 47", "actions": [{"action": "moved call shift"}],
          "documentation": {"root_cause": "call swap not checked", "prevention": "check swaps against the 80-hour rule"},
          "follow_ups": [], "decision": {}}


def render(name: str, **context) -> list[str]:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined)
    env.filters.update({f"sre.runbooks.{key}": value for key, value in FilterModule().filters().items()})
    env.globals["now"] = lambda utc=False: datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
    base = {"incident_record": RECORD, "incident_path": "/srv/incidents/x", "incident_message": "", "incident_impact": "Service",
            "incident_level": {"update_minutes": 30, "response": "Immediate (24/7)"}, "incident_responder": "sre.runbooks automation",
            "incident_program_director": "Jane Roe", "incident_acgme_violation": {}}
    return env.get_template(name).render({**base, **context}).strip().splitlines()


def test_acgme_notification_is_the_runbooks_template():
    lines = render("acgme_notification.txt.j2", incident_acgme_violation={
        "rule": "80-hour", "affected": "PGY-2 #17", "details": "84.5 h averaged over 4 weeks", "status": "Future",
        "action_taken": "call shift on 2026-11-28 reassigned"})
    assert lines[:10] == [
        "Dear Dr. Jane Roe,", "", "An ACGME violation has been detected:", "",
        "- Rule: 80-hour", "- Affected: PGY-2 #17", "- Details: 84.5 h averaged over 4 weeks", "- Status: Future",
        "- Action Taken: call shift on 2026-11-28 reassigned", ""]
    assert lines[10:] == ["Requires immediate review.", "", "sre.runbooks automation", "2026-11-23T09:30:00Z"]


def test_status_update_fields():
    lines = render("status_update.txt.j2", incident_message="rolling back v2.1.0")
    assert lines[:5] == ["[CRITICAL] Incident Update", "Status: Investigating", "Impact: Service", "Details: rolling back v2.1.0",
                         lines[4]]
    assert lines[4].startswith("Next Update: ")


def test_resolution_notice_fields():
    lines = render("resolution_notice.txt.j2", incident_message="schedule compliant again")
    assert lines[:6] == ["Incident Resolution", "Time: 2026-11-23T10:05:00+00:00", "Duration: 1 h 5 min",
                         "Impact: schedule compliant again", "Root Cause: call swap not checked",
                         "Prevention: check swaps against the 80-hour rule"]
    assert "Actions taken: moved call shift" in lines
