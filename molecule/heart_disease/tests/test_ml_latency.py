"""ml_latency: /predict answers in 1.2-1.8 s (Severity 1: response time > 1 s) while /health stays fast.

Performance Degradation's quick load test measures it, the bottleneck is the prediction path (not CPU, memory
or traffic), nothing on the host is changed and the incident is escalated with the evidence. With the latency
gone, a rerun measures p95 under 1 s, resolves and changes nothing.
"""

from __future__ import annotations

from conftest import fault, lab_ssh, model_state


def _started() -> str:
    return lab_ssh("ml1", "systemctl show -p ActiveEnterTimestamp,MainPID heart-disease-api")


def test_ml_latency_diagnosed(runbook):
    before, started = model_state(), _started()
    with fault("ml_latency"):
        dry = runbook("performance_degradation.yml", remediate=False)
        assert dry.ok, dry.output[-3000:]
        assert dry.decision["cause"] == "slow_endpoint"
        assert float(dry.decision["load_test_p95_ms"]) > 1000 > 4 * float(dry.decision["health_p95_ms"])
        assert not dry.fleet_changed and dry.actions == []

        run = runbook("performance_degradation.yml", remediate=True)
        assert run.ok, run.output[-3000:]
        assert run.decision["cause"] == "slow_endpoint" and run.record["severity"] == "sev1"
        assert run.actions == [] and not run.fleet_changed
        assert run.record.get("escalations"), "a bottleneck the runbook cannot fix is escalated"
        assert "/predict is slow while /health is fast" in " ".join(run.record.get("next_steps") or [])
    assert model_state() == before and _started() == started

    rerun = runbook("performance_degradation.yml", remediate=True)
    assert rerun.ok, rerun.output[-3000:]
    assert rerun.decision["cause"] == "none" and float(rerun.decision["load_test_p95_ms"]) < 1000
    assert rerun.actions == [] and not rerun.fleet_changed and rerun.record["status"] == "resolved"
