"""LargeDataExport: who exported what; an export the policy authorises is documented, an unauthorised one contained."""

from __future__ import annotations

from harness import accounts_restored, fault, login_status, psql, security_state, wait_for_value

PLAYBOOK = "large_data_export.yml"
EXPORTS = 'max(sum by (user_id) (increase(data_export_records_total{job="residency-scheduler-backend"}[1m])))'


def test_large_data_export(runbook):
    # A resident with a live seeded session, not the traffic's user: residents may not export in bulk.
    user_id, username = psql("SELECT u.id, u.username FROM users u JOIN sessions s ON s.user_id = u.id "
                             "WHERE u.role = 'resident' AND s.revoked_at IS NULL AND s.expires_at > now() "
                             "AND u.username <> 'avery.mensah@residency.lab' ORDER BY u.id LIMIT 1")[0]
    before = security_state()
    # The alert names the user; the window covers the whole test (the lab's alert looks back one minute).
    alert = {"labels": {"alertname": "LargeDataExport", "severity": "warning", "user_id": user_id}, "annotations": {}}
    window = {"security_triage_export_window": "30m", "alert": alert}
    with accounts_restored(username):
        with fault("large_export", "--user", username, "--records", "2000"):
            wait_for_value(EXPORTS, lambda v: v > 1000, "more than 1000 records exported in a minute")
            dry = runbook(PLAYBOOK, remediate=False, **window)
            assert dry.ok, dry.output[-3000:]
            assert security_state() == before, "remediation off changed something"
            exporter = next(u for u in dry.decision["users"] if u["user_id"] == user_id)
            assert exporter["username"] == username and exporter["role"] == "resident" and not exporter["authorised"]
            assert f"{username} (resident) exported" in dry.decision["cause"] and "NOT authorised" in dry.decision["cause"]

            # The policy authorises this user: the justification is documented and nothing is contained.
            policy = {"threshold": 1000, "authorised_roles": ["admin", "coordinator"],
                      "authorised_users": {username: "quarterly duty-hour report for the program director"}}
            allowed = runbook(PLAYBOOK, remediate=True, security_triage_export_policy=policy, **window)
            assert allowed.ok, allowed.output[-3000:]
            assert security_state() == before, "an authorised export was contained"
            assert "quarterly duty-hour report" in allowed.report

            run = runbook(PLAYBOOK, remediate=True, **window)
            assert run.ok, run.output[-3000:]
            assert "NOT authorised" in run.decision["cause"] and username in run.report
            after = security_state()
            row = next(r for r in after["users"] if r[0] == username)
            assert row[1] == "t", "the unauthorised exporter is not locked"
            assert after["sessions"] != before["sessions"], "the exporter's sessions were not revoked"
            assert psql(f"SELECT count(*) FROM sessions WHERE user_id = {int(user_id)} AND revoked_at IS NULL AND expires_at > now()") == [["0"]]
            assert login_status("app1", username) == 401, "the exporter can still log in"
            assert any(e["path"] == "security" for e in run.record.get("escalations", []))

            rerun = runbook(PLAYBOOK, remediate=True, **window)
            assert rerun.ok, rerun.output[-3000:]
            assert security_state() == after, "the rerun changed something"
            assert not rerun.fleet_changed and rerun.actions == []
