"""bad_model: a version trained on shuffled labels is deployed for real (archive, honest manifest, live, served).

Model Issues finds it below the floor and, with remediation on, restores the previous good version (hashes
verified), reloads the API and validates it; a rerun finds a good model and changes nothing.
"""

from __future__ import annotations

from conftest import FLOOR, fault, live_version, manifest_metrics, model_state, served_version, wait_for_value


def test_bad_model_rolled_back(runbook):
    good_before = live_version()
    with fault("bad_model"):
        bad = live_version()
        assert bad != good_before and served_version() == bad
        wait_for_value('min(heart_disease_model_evaluation_score{metric="accuracy"})', lambda v: v < FLOOR["accuracy"],
                       "the bad model's recorded accuracy in Prometheus", timeout=60)
        before = model_state()

        dry = runbook("model_issues.yml", remediate=False)
        assert dry.ok, dry.output[-3000:]
        assert dry.decision["cause"] == "bad_model" and dry.decision["restore_version"] == good_before
        assert model_state() == before and not dry.fleet_changed and dry.actions == []

        run = runbook("model_issues.yml", remediate=True)
        assert run.ok, run.output[-3000:]
        assert run.decision["cause"] == "bad_model"
        assert live_version() == good_before == served_version()
        assert all(manifest_metrics(good_before)[name] >= floor for name, floor in FLOOR.items())
        assert all(run.decision["validated_metrics"][name] >= floor for name, floor in FLOOR.items())
        assert [a["action"].split(" (")[0] for a in run.actions] == [f"restored model version {good_before}", "reloaded heart-disease-api"]
        assert run.record["status"] == "resolved" and run.record["severity"] == "sev1"
        assert run.fleet_changed == {"ml1": 2}

        rerun = runbook("model_issues.yml", remediate=True)
        assert rerun.ok, rerun.output[-3000:]
        assert rerun.decision["cause"] == "ok" and rerun.actions == [] and not rerun.fleet_changed
        assert live_version() == good_before
