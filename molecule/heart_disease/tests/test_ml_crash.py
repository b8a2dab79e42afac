"""ml_crash: heart-disease-api is killed and left failed → Service Disruption starts it, Service Recovery verifies."""

from hd_service import API_UNIT, WORKER_UNIT, status, units

from harness import fault


def test_ml_crash(runbook):
    with fault("ml_crash"):
        before = units()
        assert before[API_UNIT] == "failed" and before[WORKER_UNIT] == "active"

        dry = runbook("service_disruption.yml", remediate=False)
        assert dry.ok, dry.output[-4000:]
        assert dry.decision["units_to_start"] == [f"ml1:{API_UNIT}"]
        assert dry.decision["failing_components"] == ["api"]
        assert dry.record["severity"] == "sev1" and "system unavailable" in dry.record["severity_reasons"]
        assert dry.actions == [] and not dry.fleet_changed and units() == before
        assert status("/health") == 0  # still down: nothing listens

        run = runbook("service_disruption.yml", remediate=True)
        assert run.ok, run.output[-4000:]
        assert units() == {API_UNIT: "active", WORKER_UNIT: "active"}
        assert status("/health") == 200
        assert run.fleet_changed == {"ml1": 1}
        assert [a["action"] for a in run.actions] == [f"started {API_UNIT} (was failed)"]
        assert run.record["status"] == "resolved" and run.decision["recovery"] == "recovered"

        recovery = runbook("service_recovery.yml", remediate=True)
        assert recovery.ok, recovery.output[-4000:]
        assert recovery.decision["functionality_verified"] is True and recovery.decision["failed_paths"] == []
        assert recovery.actions == [] and not recovery.fleet_changed

        rerun = runbook("service_disruption.yml", remediate=True)
        assert rerun.ok and rerun.actions == [] and not rerun.fleet_changed
        assert rerun.decision["failing_units"] == [] and rerun.record["status"] == "resolved"
