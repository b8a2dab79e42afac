"""drift: 200 patients scored with chol +70 and thalach -35 (the worker's drift score goes past 1.5).

Model Issues' data checks find the drift (PSI of chol and thalach significant) while the model itself is
intact and above the floor: the cause is the inputs, so nothing is restored, with or without remediation,
and the next step sends the engineer upstream to the data.
"""

from __future__ import annotations

from conftest import fault, model_state


def test_drift_found_model_untouched(runbook):
    before = model_state()
    with fault("drift"):
        dry = runbook("model_issues.yml", remediate=False)
        assert dry.ok, dry.output[-3000:]
        assert dry.decision["cause"] == "drift"
        assert {"chol", "thalach"} <= set(dry.decision["drifted_features"])
        assert not dry.fleet_changed and dry.actions == [] and model_state() == before

        run = runbook("model_issues.yml", remediate=True)
        assert run.ok, run.output[-3000:]
        assert run.decision["cause"] == "drift" and run.decision["restore_version"] == ""
        assert run.actions == [] and not run.fleet_changed and model_state() == before
        assert any("chol" in step and "thalach" in step for step in run.record.get("next_steps") or [])
