"""ACGMEViolationDetected: a schedule edit takes the supervising faculty off a weekday block that PGY-1 residents work
(lab fault acgme_violation). The runbook names the rule and the residents, proposes a supervisor and, with remediation
only, assigns one; the block is supervised again and a rerun changes nothing."""

from __future__ import annotations

import json

from harness import PORT_OFFSET, fault, lab_ssh, wait_for_alert


def psql(sql: str) -> str:
    return lab_ssh("db1", f"cd /tmp && runuser -u postgres -- psql -X -At -p {15432 + PORT_OFFSET} -d residency_scheduler -c \"{sql}\"")


def schedule() -> str:
    """Every assignment (what the remediation would change)."""
    return psql("SELECT id, block_id, person_id, role FROM assignments ORDER BY id")


def supervisors(block_id: int) -> int:
    return int(psql(f"SELECT count(*) FROM assignments a JOIN people p ON p.id = a.person_id "
                    f"WHERE a.block_id = {int(block_id)} AND a.role = 'supervising' AND p.type = 'faculty'"))


def test_acgme_violation_detected(runbook):
    with fault("acgme_violation") as started:
        planted = json.loads(started.stdout.split(": ", 1)[1])
        interns = {str(v["person_id"]) for v in planted["violations"]}
        assert interns and supervisors(planted["block_id"]) == 0
        alert = wait_for_alert("ACGMEViolationDetected")
        assert alert["labels"]["rule"] == "pgy1_supervision" and alert["labels"]["person_id"] in interns
        payload = {"labels": alert["labels"], "annotations": alert["annotations"]}
        before = schedule()

        dry = runbook("acgme_violation_detected.yml", remediate=False, alert=payload)
        assert dry.ok, dry.output[-3000:]
        assert dry.decision["rules"] == ["pgy1_supervision"] and int(dry.decision["future"]) >= 1
        assert dry.actions == [] and schedule() == before  # remediation off changes nothing

        run = runbook("acgme_violation_detected.yml", remediate=True, alert=payload)
        assert run.ok, run.output[-3000:]
        assert [a["action"] for a in run.actions] == ["schedule change"]
        assert "pgy1_supervision" in run.report and run.record["status"] == "resolved"
        assert supervisors(planted["block_id"]) >= 1  # a faculty member supervises the block again

        rerun = runbook("acgme_violation_detected.yml", remediate=True, alert=payload)
        assert rerun.ok, rerun.output[-3000:]
        assert rerun.actions == [] and not rerun.fleet_changed
        assert int(rerun.decision["future"]) == 0
