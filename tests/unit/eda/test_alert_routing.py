"""The path from an alert to its runbook, checked without running anything long.

One table (rulebooks/alert_runbooks.yml) maps every alert name and alias to its playbook; the Prometheus rules
carry the same playbook in their annotations and pass promtool (check and unit tests, every rule fired at least
once); the Alertmanager configuration routes every alert to the rulebook's receiver on a path; the local and
controller rulebooks are the same rules with different actions; the controller has a job template for every
playbook the table names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RULES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((REPO / "prometheus" / "tests").glob("*.yml"))
VARS = yaml.safe_load((REPO / "rulebooks" / "alert_runbooks.yml").read_text(encoding="utf-8"))
TABLE = VARS["alert_runbooks"]

# TARGETS.md: the 13 alerts of the Residency Scheduler, the playbooks issue 8 names them by, and the aliases.
TARGET_ALERTS = {
    "HighErrorRate": "high_error_rate.yml", "SlowResponseTime": "slow_response_time.yml",
    "HighCPUUsage": "high_cpu_usage.yml", "LowMemory": "low_memory.yml",
    "DatabaseConnectionPoolExhaustion": "database_connection_pool_exhaustion.yml",
    "ACGMEViolationDetected": "acgme_violation_detected.yml", "RepeatedACGMEViolations": "repeated_acgme_violations.yml",
    "WorkHourThresholdApproaching": "work_hour_threshold_approaching.yml",
    "FailedAuthenticationSpike": "failed_authentication_spike.yml",
    "SuspiciousActivityDetected": "suspicious_activity_detected.yml", "LargeDataExport": "large_data_export.yml",
    "SlowDatabaseQueries": "slow_database_queries.yml", "LowCacheHitRate": "low_cache_hit_rate.yml",
}


def _rules() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_the_table_names_every_target_alert_by_its_playbook():
    for alert, playbook in TARGET_ALERTS.items():
        assert TABLE[alert] == playbook


def test_every_alias_routes_to_the_playbook_of_the_alert_it_stands_for():
    aliases = {rule["alert"]: rule["labels"]["alias_of"] for rule in _rules() if "alias_of" in rule.get("labels", {})}
    assert {"HighLatencyP95", "PostgreSQLHighConnections", "ACGMEWorkHoursWarning", "ACGMEWorkHoursViolation"} <= set(aliases)
    for alias, canonical in aliases.items():
        assert TABLE[alias] == TABLE[canonical] == TARGET_ALERTS[canonical], alias


def test_every_rule_is_in_the_table_and_annotated_with_its_playbook_and_runbook_url():
    rules = _rules()
    assert {rule["alert"] for rule in rules} == set(TABLE)
    for rule in rules:
        annotations = rule["annotations"]
        assert annotations["playbook"] == TABLE[rule["alert"]], rule["alert"]
        assert re.match(r"^https://\S+/docs/runbooks/[a-z-]+\.md#[a-z0-9-]+$", annotations["runbook_url"]), rule["alert"]
        assert annotations["runbook_url"].split("#")[1] == annotations["runbook"].split("#")[1]


def test_the_rulebook_condition_list_is_the_table():
    assert VARS["alert_runbook_names"] == list(TABLE)


def test_promtool_checks_the_rules_and_their_unit_tests_pass():
    check = subprocess.run(["promtool", "check", "rules", *map(str, RULES)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(["promtool", "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True, check=False,
                          cwd=REPO / "prometheus" / "tests")
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert unit.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_rule_has_a_promtool_test_that_fires_it():
    fired = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
                    for expected in check["exp_alerts"]:  # the annotations the rulebook and the person rely on
                        assert {"playbook", "runbook_url"} <= set(expected.get("exp_annotations", {})), check["alertname"]
    assert fired == {rule["alert"] for rule in _rules()}


def _alertmanager() -> dict:
    return yaml.safe_load((REPO / "prometheus" / "alertmanager.yml").read_text(encoding="utf-8"))


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool comes with prometheus-alertmanager (make deps)")
def test_amtool_accepts_the_alertmanager_configuration():
    check = subprocess.run(["amtool", "check-config", str(REPO / "prometheus" / "alertmanager.yml")],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_alertmanager_sends_every_alert_and_its_resolution_to_the_rulebook_on_a_path():
    config = _alertmanager()
    first = config["route"]["routes"][0]
    assert first["receiver"] == "eda-runbooks" and first["continue"] is True
    assert "matchers" not in first and first["group_by"] == ["..."]  # every alert, one notification each
    receiver = next(r for r in config["receivers"] if r["name"] == "eda-runbooks")
    webhook = receiver["webhook_configs"][0]
    assert webhook["send_resolved"] is True
    assert re.match(r"^http://[^/]+/[A-Za-z0-9_-]+$", webhook["url"])  # ansible.eda.alertmanager: POST /<endpoint>
    assert config["route"]["group_by"] == ["alertname", "severity", "service"]  # TARGETS.md's grouping for people
    assert {r["name"] for r in config["receivers"]} == {"eda-runbooks", "critical-alerts", "warning-alerts", "database-alerts",
                                                        "infrastructure-alerts", "scheduling-alerts", "compliance-alerts"}


def _rulebook(name: str) -> list[dict]:
    return yaml.safe_load((REPO / "rulebooks" / name).read_text(encoding="utf-8"))


def test_local_and_controller_rulebooks_are_the_same_rules_with_different_actions():
    local, controller = _rulebook("alertmanager.yml")[0], _rulebook("alertmanager_controller.yml")[0]
    assert local["sources"] == controller["sources"]
    source = local["sources"][0]
    assert source["ansible.eda.alertmanager"]["data_host_path"] == ""  # no --limit: the playbooks limit themselves
    assert source["filters"] == [{"sre.runbooks.incident_dedup": {"claim_seconds": 900}}]
    assert [(r["condition"], r.get("throttle")) for r in local["rules"]] == \
        [(r["condition"], r.get("throttle")) for r in controller["rules"]]
    kinds = [(next(iter(r["action"])), next(iter(c["action"]))) for r, c in zip(local["rules"], controller["rules"])]
    assert kinds == [("run_playbook", "run_job_template"), ("run_playbook", "run_job_template"), ("debug", "debug")]
    firing = local["rules"][0]
    assert firing["throttle"]["group_by_attributes"] == ["event.alert.fingerprint"]
    assert 'event.incident.state == "new"' in firing["condition"] and "vars.alert_runbook_names" in firing["condition"]
    assert firing["action"]["run_playbook"]["extra_vars"]["alert"] == "{{ event.alert }}"
    assert controller["rules"][0]["action"]["run_job_template"]["job_args"]["extra_vars"]["alert"] == "{{ event.alert }}"


def test_the_rulebooks_pass_ansible_rulebooks_own_schema():
    validators = pytest.importorskip("ansible_rulebook.validators")
    for name in ("alertmanager.yml", "alertmanager_controller.yml"):
        validators.Validate.rulebook(_rulebook(name))


def test_the_controller_has_a_job_template_for_every_playbook_the_table_names():
    controller = yaml.safe_load((REPO / "controller" / "runbooks.yml").read_text(encoding="utf-8"))
    playbooks = {item["playbook"] for item in controller["controller_runbooks"]}
    assert set(TABLE.values()) | {"resolve_incident.yml", "incident_response.yml"} <= playbooks
    assert controller["controller_job_template_prefix"] == VARS["controller_job_template_prefix"]
    assert controller["controller_organization"] == VARS["controller_organization"]
    remediating = {item["playbook"] for item in controller["controller_runbooks"] if item["remediates"]}
    assert set(TARGET_ALERTS.values()) <= remediating and "resolve_incident.yml" not in remediating


def test_the_controller_configuration_passes_a_syntax_check():
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check",
                           "controller/configure.yml", "rulebooks/playbooks/resolve_incident.yml"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
