"""FailedAuthenticationSpike: a password spray gets its address blocked, credential stuffing gets the account secured.

The lab's attackers arrive through the proxy (X-Forwarded-For, TEST-NET-3 addresses) and its hosts share the
machine's network, so blocking is the application's denylist (ip_blocklist denylist_file), proven by a request from
the blocked address being refused by the app. The lab's own traffic logs in as avery.mensah from 127.0.0.1, now and
then with a wrong password: that address is internal and must never be blocked.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import datetime, timezone

from harness import accounts_restored, clear_app_denylist, fault, login_status, security_state, wait_for_value

PLAYBOOK = "failed_authentication_spike.yml"
FAILURES = 'sum(rate(auth_failures_total{job="residency-scheduler-backend"}[30s]))'
SPRAY_EVIDENCE_SECONDS = 20
VICTIM = "avery.mensah@residency.lab"  # the stuffing generator's target (and the traffic's user)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_password_spray_blocks_the_address(runbook):
    before = security_state()
    since = _now()
    try:
        with fault("auth_spray", "--mode", "accounts"):
            sprayed_from = time.monotonic()
            wait_for_value(FAILURES, lambda v: v > 1, "failed logins above 1/s")
            # The rate can still hold an earlier test's failures: give the window this spray's own evidence (one
            # address, many accounts) whatever the rate said.
            time.sleep(max(0.0, SPRAY_EVIDENCE_SECONDS - (time.monotonic() - sprayed_from)))
            window = {"security_triage_since": since, "security_triage_until": _now()}
            dry = runbook(PLAYBOOK, remediate=False, **window)
            assert dry.ok, dry.output[-3000:]
            assert security_state() == before, "remediation off changed something"
            assert dry.decision["pattern"] == "password_spray"
            assert dry.decision["block"] == ["203.0.113.66"]
            assert dry.decision["secure_accounts"] == []

            run = runbook(PLAYBOOK, remediate=True, **window)
            assert run.ok, run.output[-3000:]
            assert "password spray from 203.0.113.66" in run.decision["cause"]
            assert "password spray from 203.0.113.66" in run.report
            after = security_state()
            assert after["denylist"] == {"app1": ["203.0.113.66"], "app2": ["203.0.113.66"]}
            assert after["users"] == before["users"] and after["sessions"] == before["sessions"], "a spray locks no account"
            time.sleep(1.5)  # the backends re-read the denylist within a second
            for host in ("app1", "app2"):
                assert login_status(host, "user001@residency.lab", "Winter2024!", client="203.0.113.66") == 403
                assert login_status(host, "user001@residency.lab", "Winter2024!", client="203.0.113.67") == 401
            assert run.decision["recovery"] == "recovered", run.decision
            assert any(e["path"] == "security" for e in run.record.get("escalations", [])), "the security team was not notified"

            rerun = runbook(PLAYBOOK, remediate=True, **window)
            assert rerun.ok, rerun.output[-3000:]
            assert security_state() == after, "the rerun changed something"
            assert not rerun.fleet_changed and rerun.actions == []
    finally:
        clear_app_denylist()


def test_credential_stuffing_secures_the_account(runbook):
    before = security_state()
    since = _now()
    with accounts_restored(VICTIM):
        try:
            with fault("auth_spray", "--mode", "ips"):
                wait_for_value(FAILURES, lambda v: v > 1, "failed logins above 1/s")
                time.sleep(15)  # a few addresses fail more than once
                # A short window spreads few attempts over ~250 addresses: two failures, only on the victim, mark an attacker here.
                window = {"security_triage_since": since, "security_triage_until": _now(), "runbook_escalate_after_minutes": 0.5,
                          "security_triage_min_failures": 2}
                dry = runbook(PLAYBOOK, remediate=False, **window)
                assert dry.ok, dry.output[-3000:]
                assert security_state() == before, "remediation off changed something"
                assert dry.decision["pattern"] == "credential_stuffing"
                assert dry.decision["stuffed_accounts"] == [VICTIM]
                blocked = dry.decision["block"]
                assert len(blocked) <= 20
                assert all(ipaddress.ip_address(a) in ipaddress.ip_network("203.0.113.0/24") for a in blocked), blocked
                assert "127.0.0.1" not in blocked  # the victim's own (internal) address

                run = runbook(PLAYBOOK, remediate=True, **window)
                assert run.ok, run.output[-3000:]
                assert f"credential stuffing against {VICTIM}" in run.decision["cause"]
                after = security_state()
                victim = next(row for row in after["users"] if row[0] == VICTIM)
                assert victim[1:4] == ["t", "t", "t"], f"not locked, MFA, reset: {victim}"
                changed = [row[0] for row, old in zip(after["users"], before["users"]) if row != old]
                assert changed == [VICTIM], f"only the stuffed account may change, got {changed}"
                assert login_status("app1", VICTIM) == 401, "the stuffed account still logs in"
                assert sorted(after["denylist"]["app1"]) == sorted(blocked) == sorted(after["denylist"]["app2"])
                for address in blocked[:3]:
                    assert login_status("app2", VICTIM, "x", client=address) == 403

                rerun = runbook(PLAYBOOK, remediate=True, **window)
                assert rerun.ok, rerun.output[-3000:]
                assert security_state() == after, "the rerun changed something"
                assert not rerun.fleet_changed
                assert len(rerun.actions) == len(run.actions), "the rerun recorded new actions"
        finally:
            clear_app_denylist()
