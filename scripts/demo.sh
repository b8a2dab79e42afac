#!/usr/bin/env bash
# make demo: a fresh lab, a bad deployment, the HighErrorRate alert, the runbook, the report.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
remediate="${DEMO_REMEDIATE:-false}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Lab up (fresh): systemd hosts on loopback, services as units, reached over SSH"
lab/lab down >/dev/null 2>&1 || true
lab/lab up
lab/lab ssh app1 -- systemctl status residency-scheduler-backend --no-pager --lines=0 || true

step "A release with a database defect reaches both app hosts"
lab/lab deploy v1.5.0 --defect database

step "Waiting for Prometheus to fire HighErrorRate (lab rule: for 30s)"
for _attempt in $(seq 1 40); do
  if lab/lab alerts 2>/dev/null | grep -q "HighErrorRate.*firing"; then break; fi
  sleep 3
done
lab/lab alerts || true

step "ansible-playbook playbooks/high_error_rate.yml -i inventories/lab (runbook_remediate=$remediate)"
ansible-playbook playbooks/high_error_rate.yml -i inventories/lab \
  -e runbook_remediate="$remediate" -e runbook_poll_seconds=5 -e runbook_escalate_after_minutes=3 -e runbook_monitor_minutes=0.5

# The newest HighErrorRate incident directory (names end in a UTC timestamp, so they sort by time).
report=$(find playbooks/incidents -maxdepth 1 -type d -name 'HighErrorRate-*' | sort | tail -1)/
step "Report: ${report}report.md"
sed -n '1,/^## Findings/p' "${report}report.md" | head -n -1
echo
echo "Full report: ${report}report.md (and report.html)   record: ${report}incident.json   task log: ${report}timeline.jsonl"
echo "The lab is still up: lab/lab status | lab/lab alerts | make lab-down"
[ "$remediate" = true ] || echo "Let the runbook roll the release back: DEMO_REMEDIATE=true make demo"
