"""RepeatedACGMEViolations: the supervising faculty are taken off the next three weekday afternoons (lab fault
acgme_repeated), so each PGY-1 on them breaks pgy1_supervision three times. The runbook pulls the person's history and
names the pattern, proposes supervisors and, with remediation only, assigns them; a rerun changes nothing."""

from __future__ import annotations

import json

from harness import PORT_OFFSET, fault, lab_ssh, wait_for_alert


def psql(sql: str) -> str:
    return lab_ssh("db1", f"cd /tmp && runuser -u postgres -- psql -X -At -p {15432 + PORT_OFFSET} -d residency_scheduler -c \"{sql}\"")


def schedule() -> str:
    """Every assignment (what the remediation would change)."""
    return psql("SELECT id, block_id, person_id, role FROM assignments ORDER BY id")


def unsupervised(block_ids: list[int]) -> int:
    """How many of the blocks have no supervising faculty member."""
    return int(psql(f"SELECT count(*) FROM blocks b WHERE b.id IN ({','.join(map(str, block_ids))}) AND NOT EXISTS ("
                    "SELECT 1 FROM assignments a JOIN people p ON p.id = a.person_id "
                    "WHERE a.block_id = b.id AND a.role = 'supervising' AND p.type = 'faculty')"))


def test_repeated_acgme_violations(runbook):
    with fault("acgme_repeated") as started:
        planted = json.loads(started.stdout.split(": ", 1)[1])
        blocks = planted["block_ids"]
        assert len(blocks) == 3 and unsupervised(blocks) == 3
        alert = wait_for_alert("RepeatedACGMEViolations")
        person = alert["labels"]["person_id"]
        assert [v["rule"] for v in planted["violations"] if str(v["person_id"]) == person] == ["pgy1_supervision"] * 3
        payload = {"labels": alert["labels"], "annotations": alert["annotations"]}
        before = schedule()

        dry = runbook("repeated_acgme_violations.yml", remediate=False, alert=payload)
        assert dry.ok, dry.output[-3000:]
        pattern = dry.decision["pattern"]
        assert pattern["by_rule"] == {"pgy1_supervision": 3} and pattern["count"] == 3
        assert dry.actions == [] and schedule() == before  # remediation off changes nothing

        run = runbook("repeated_acgme_violations.yml", remediate=True, alert=payload)
        assert run.ok, run.output[-3000:]
        assert [a["action"] for a in run.actions] == ["schedule change"]
        assert "pgy1_supervision" in run.report
        assert unsupervised(blocks) == 0  # every afternoon has a supervisor again

        rerun = runbook("repeated_acgme_violations.yml", remediate=True, alert=payload)
        assert rerun.ok, rerun.output[-3000:]
        assert rerun.actions == [] and not rerun.fleet_changed
