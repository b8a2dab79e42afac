"""corrupt_model: the live model file is cut in half; the API cannot load it (/health 503, /predict 503).

Model Issues finds the sha256 differs from the manifest and the file does not load; with remediation on it
reinstalls the live version from its verified backup and reloads the API; a rerun changes nothing.
"""

from __future__ import annotations

from conftest import fault, live_version, manifest_files, model_state, served_version


def test_corrupt_model_reinstalled(runbook):
    version = live_version()
    with fault("corrupt_model"):
        before = model_state()
        assert before["files"] != manifest_files(version) and served_version() is None

        dry = runbook("model_issues.yml", remediate=False)
        assert dry.ok, dry.output[-3000:]
        assert dry.decision["cause"] == "corrupt_model" and dry.decision["action"] == "reinstall"
        assert dry.decision["restore_version"] == version
        assert model_state() == before and not dry.fleet_changed and dry.actions == []

        run = runbook("model_issues.yml", remediate=True)
        assert run.ok, run.output[-3000:]
        assert live_version() == version == served_version()
        assert model_state()["files"] == manifest_files(version)
        assert run.record["status"] == "resolved" and run.record["severity"] == "sev1"
        assert run.fleet_changed == {"ml1": 2}

        rerun = runbook("model_issues.yml", remediate=True)
        assert rerun.ok and rerun.decision["cause"] == "ok" and rerun.actions == [] and not rerun.fleet_changed
