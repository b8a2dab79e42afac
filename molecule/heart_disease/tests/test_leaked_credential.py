"""leaked_credential: the partner key is published in public/ and used from 127.66.6.0/24 with guessing.

Security Incident isolates the file and blocks the network; Security Recovery rotates exactly that key: the new key
works, the leaked one is refused, the other partner's key still works; reruns change nothing.
"""

import json

from hd_service import HOME, security_state, status

from harness import fault, lab_ssh

ATTACKER = "127.66.6.77"


def test_leaked_credential(runbook):
    try:
        with fault("leaked_credential"):
            leaked = [line.split("=", 1)[1].strip() for line in (HOME / "public" / "leaked.txt").read_text().splitlines()
                      if line.startswith("HEART_API_KEY=")][0]
            before = security_state()
            other = [key for key in before["keys"] if key != leaked][0]
            assert status("/models/info", leaked, ATTACKER) == 200  # the leak works from the unknown network

            dry = runbook("security_incident.yml", remediate=False)
            assert dry.ok, dry.output[-4000:]
            assert dry.decision["leaked_keys"] == [leaked[:12]]
            assert dry.decision["networks_to_block"] == ["127.66.6.0/24"]
            assert dry.decision["data_breach"] is True and dry.record["severity"] == "sev1"
            assert dry.actions == [] and not dry.fleet_changed and security_state() == before
            assert leaked not in dry.output and leaked not in json.dumps(dry.record)

            incident = runbook("security_incident.yml", remediate=True)
            assert incident.ok, incident.output[-4000:]
            assert not (HOME / "public" / "leaked.txt").exists()
            assert status("/health", source=ATTACKER) == 403 and status("/models/info", leaked, ATTACKER) == 403
            assert status("/models/info", other) == 200
            assert incident.record["escalations"][0]["contact"] == "Security Team"

            recovery = runbook("security_recovery.yml", remediate=True)
            assert recovery.ok, recovery.output[-4000:]
            assert recovery.decision["rotated_keys"] == [leaked[:12]] and recovery.record["status"] == "resolved"
            keys = security_state()["keys"]
            assert leaked not in keys and other in keys and len(keys) == len(before["keys"])
            new = (HOME / "config" / "rotated" / f"{leaked[:12]}.replacement").read_text().strip()
            assert new in keys
            assert status("/models/info", new) == 200
            assert status("/models/info", leaked) == 401
            assert status("/models/info", other) == 200
            assert new not in recovery.output and leaked not in recovery.output

            # the security incident is still open (contained, not resolved): the rerun joins it, adds nothing, resolves it
            rerun = runbook("security_incident.yml", remediate=True)
            assert rerun.ok, rerun.output[-4000:]
            assert rerun.actions == incident.record["actions"] and not rerun.fleet_changed
            assert rerun.decision["networks_to_block"] == [] and rerun.decision["exposed_files"] == []
            assert rerun.record["status"] == "resolved"
            rerun = runbook("security_recovery.yml", remediate=True)
            assert rerun.ok, rerun.output[-4000:]
            assert rerun.actions == [] and not rerun.fleet_changed
    finally:
        # the block and the evidence belong to this test: later tests' traffic must not meet them
        lab_ssh("ml1", "rm -rf /opt/heart-disease/config/denylist.json /opt/heart-disease/quarantine /opt/heart-disease/config/rotated")
