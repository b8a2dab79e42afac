"""Post-incident: after a service disruption fixed by the runbook, the review documents it, works through the
checklist and writes the runbook's Status Update and Resolution Notice; it changes nothing on the fleet."""

import json
from pathlib import Path

from hd_service import units

from harness import fault


def test_post_incident(runbook):
    with fault("ml_crash"):
        fixed = runbook("service_disruption.yml", remediate=True)
        assert fixed.ok and fixed.record["status"] == "resolved", fixed.output[-4000:]
        before = units()
        incident = fixed.record["id"]

        review = runbook("post_incident.yml", remediate=False, post_incident_id=incident)
        assert review.ok, review.output[-4000:]
        path = Path(fixed.record["path"])
        record = json.loads((path / "incident.json").read_text())
        assert record["status"] == "closed"
        doc = record["documentation"]
        for item in ("timeline", "actions_taken", "root_cause", "recovery_steps", "lessons_learned"):
            assert doc.get(item), item
        assert "heart-disease-api" in doc["root_cause"] and "started heart-disease-api" in doc["actions_taken"]
        assert record["decision"]["post_incident_checklist_open"]  # teams, status page, runbook update: for a person

        text = (path / "post_incident.md").read_text()
        assert "- [x] Verify recovery" in text and "- [x] Assess severity" in text and "- [ ] Schedule review" in text
        update = (path / "status_update.txt").read_text().splitlines()
        assert update[0] == "[SEV1] Incident Update"
        assert [line.split(":")[0] for line in update[1:5]] == ["Status", "Impact", "Details", "Next Update"]
        assert update[1] == "Status: Resolved"
        notice = (path / "resolution_notice.txt").read_text().splitlines()
        assert notice[0] == "Incident Resolution"
        assert [line.split(":")[0] for line in notice[1:6]] == ["Time", "Duration", "Impact", "Root Cause", "Prevention"]
        assert "heart-disease-api" in notice[4]
        assert not review.fleet_changed and units() == before

        rerun = runbook("post_incident.yml", remediate=True, post_incident_id=incident)
        assert rerun.ok and not rerun.fleet_changed and rerun.actions == fixed.actions
