"""Initial assessment: the severity follows the runbook's rules from what is really wrong.

A failed worker with the API serving is a single component issue (Severity 3); the API down is "system unavailable"
(Severity 1). The assessment changes nothing, remediation on or off.
"""

from hd_service import API_UNIT, WORKER_UNIT, units

from harness import fault


def test_initial_assessment(runbook):
    with fault("ml_worker_crash"):
        before = units()
        run = runbook("initial_assessment.yml", remediate=True)
        assert run.ok, run.output[-4000:]
        assert run.record["severity"] == "sev3", run.record.get("severity_reasons")
        assert "single component issue" in run.record["severity_reasons"]
        assert run.decision["affected_components"] == ["worker"]
        assert run.decision["affected_units"] == [f"ml1:{WORKER_UNIT}"]
        assert run.decision["current_status"] == "degraded"
        assert run.decision["start_time"]
        assert "service_disruption.yml" in run.decision["next_procedure"]
        assert run.actions == [] and not run.fleet_changed and units() == before

    with fault("ml_crash"):
        run = runbook("initial_assessment.yml", remediate=False)
        assert run.ok, run.output[-4000:]
        assert run.record["severity"] == "sev1" and "system unavailable" in run.record["severity_reasons"]
        assert "api" in run.decision["affected_components"]
        assert run.actions == [] and not run.fleet_changed and units()[API_UNIT] == "failed"

        # API Issues (Immediate Actions) names the dead unit; remediation off starts nothing.
        api = runbook("api_issues.yml", remediate=False)
        assert api.ok, api.output[-4000:]
        assert API_UNIT in " ".join(api.decision["api_down"]), api.decision
        assert api.actions == [] and not api.fleet_changed and units()[API_UNIT] == "failed"

    # Resource Issues on a healthy ML host: both units measured, no memory or disk pressure invented, nothing changed.
    resources = runbook("resource_issues.yml", remediate=True)
    assert resources.ok, resources.output[-4000:]
    assert {"heart-disease-api", "heart-disease-worker"} <= set(resources.decision["unit_cpu_cores"]), resources.decision
    assert resources.decision["memory_pressure"] is False and resources.decision["disk_pressure"] is False, resources.decision
    assert resources.actions == [] and not resources.fleet_changed
