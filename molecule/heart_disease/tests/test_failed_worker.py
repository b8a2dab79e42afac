"""ml_worker_crash: heart-disease-worker exits with status 1 and stays failed → Service Recovery starts it and tests
every critical path; Service Disruption then finds nothing down."""

from hd_service import API_UNIT, WORKER_UNIT, WORKER_URL, status, units

from harness import fault


def test_failed_worker(runbook):
    with fault("ml_worker_crash"):
        before = units()
        assert before == {API_UNIT: "active", WORKER_UNIT: "failed"}

        dry = runbook("service_recovery.yml", remediate=False)
        assert dry.ok, dry.output[-4000:]
        assert dry.decision["down_before"] == [WORKER_UNIT] and dry.decision["functionality_verified"] is False
        assert any(path.startswith("ml1:worker_health") for path in dry.decision["failed_paths"])
        assert dry.actions == [] and not dry.fleet_changed and units() == before

        run = runbook("service_recovery.yml", remediate=True)
        assert run.ok, run.output[-4000:]
        assert units() == {API_UNIT: "active", WORKER_UNIT: "active"}
        assert status("/health", url=WORKER_URL) == 200
        assert [a["action"] for a in run.actions] == [f"started {WORKER_UNIT} (was failed)"]
        assert run.fleet_changed == {"ml1": 1}
        assert run.decision["functionality_verified"] is True and run.record["status"] == "resolved"

        rerun = runbook("service_disruption.yml", remediate=True)
        assert rerun.ok and rerun.actions == [] and not rerun.fleet_changed
        assert rerun.decision["failing_units"] == []
