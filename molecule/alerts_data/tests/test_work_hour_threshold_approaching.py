"""WorkHourThresholdApproaching: a PGY-2 resident also works this weekend (lab fault work_hours): 84 h this week. The
runbook names the resident and the hours, proposes covers for the latest shifts and, with remediation only, hands them
over; the resident is back under 75 h and a rerun changes nothing."""

from __future__ import annotations

import json
import time

from harness import PORT_OFFSET, fault, lab_ssh, wait_for_alert, wait_for_value


def psql(sql: str) -> str:
    return lab_ssh("db1", f"cd /tmp && runuser -u postgres -- psql -X -At -p {15432 + PORT_OFFSET} -d residency_scheduler -c \"{sql}\"")


def schedule() -> str:
    """Every assignment (what the remediation would change)."""
    return psql("SELECT id, block_id, person_id, role FROM assignments ORDER BY id")


def planted_blocks_ahead() -> int:
    """The fault's weekend blocks (AM 07:00, PM 13:00, the lab's time zone UTC) that have not started: those a cover
    can take. If one starts in the next two minutes, wait until it has, so that the run sees the same."""
    sql = ("SELECT extract(epoch FROM min_start - now())::int, n FROM (SELECT count(*) AS n, min(starts) AS min_start FROM "
           "(SELECT (b.date + CASE b.time_of_day WHEN 'AM' THEN time '07:00' ELSE time '13:00' END) AT TIME ZONE 'UTC' AS starts "
           "FROM assignments a JOIN blocks b ON b.id = a.block_id WHERE a.created_by = 'lab-fault:work_hours') planted "
           "WHERE starts > now()) ahead")
    seconds, count = psql(sql).strip().split("|")
    if count != "0" and int(seconds) < 120:
        time.sleep(int(seconds) + 5)
        return planted_blocks_ahead()
    return int(count)


def test_work_hour_threshold_approaching(runbook):
    with fault("work_hours") as started:
        planted = json.loads(started.stdout.split(": ", 1)[1])
        person = str(planted["person_id"])
        hours = f'resident_work_hours_weekly{{person_id="{person}"}}'
        wait_for_value(hours, lambda v: v > 75, "the resident's scheduled hours over 75")
        alert = wait_for_alert("WorkHourThresholdApproaching")
        assert alert["labels"]["person_id"] == person
        payload = {"labels": alert["labels"], "annotations": alert["annotations"]}
        before = schedule()

        dry = runbook("work_hour_threshold_approaching.yml", remediate=False, alert=payload)
        assert dry.ok, dry.output[-3000:]
        table = [f for f in dry.record["findings"] if f["title"].startswith("Hours this week")][0]["table"]["rows"]
        assert len(table) == 1 and float(table[0][3]) >= 84
        assert dry.actions == [] and schedule() == before  # remediation off changes nothing

        ahead = planted_blocks_ahead()
        run = runbook("work_hour_threshold_approaching.yml", remediate=True, alert=payload)
        assert run.ok, run.output[-3000:]
        if ahead >= 2:  # 84 h less two 6-hour blocks: under 75
            assert [a["action"] for a in run.actions] == ["shifts covered"] and run.record["status"] == "resolved"
            assert schedule() != before
            # the worker (every 10 s) sees the resident under the threshold again
            wait_for_value(hours, lambda v: v <= 75, "the resident's scheduled hours back under 75", timeout=60)
        elif ahead == 1:  # Sunday morning: the afternoon block is all a cover can take, 78 h stay
            assert [a["action"] for a in run.actions] == ["shifts covered"] and run.record["status"] == "mitigating"
            assert schedule() != before
        else:  # Sunday afternoon: the week's hours are worked or under way, nothing can move
            assert run.actions == [] and schedule() == before and run.record["status"] == "mitigating"
            assert any(step.startswith("Nothing of this week is left to move") for step in run.record["next_steps"]), run.record["next_steps"]
            assert run.record["documentation"]["corrective_action"].startswith("None possible")

        rerun = runbook("work_hour_threshold_approaching.yml", remediate=True, alert=payload)
        assert rerun.ok, rerun.output[-3000:]
        assert rerun.actions == [] and not rerun.fleet_changed
