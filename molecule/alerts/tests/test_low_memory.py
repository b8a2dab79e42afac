"""LowMemory: the backend on app1 leaks (fault memory_leak, until the service restarts); the runbook finds the leak in
the service, restarts that one instance (health-gated, app2 untouched) and memory is available again."""

from __future__ import annotations

from harness import (app_health, as_alertmanager, fault, prometheus_value, service_state, wait_for_alert,
                     wait_for_value)

MEMORY = '(node_memory_MemAvailable_bytes{host="app1"} / node_memory_MemTotal_bytes{host="app1"}) * 100'


def test_low_memory(runbook):
    with fault("memory_leak", "--hosts", "app1"):
        wait_for_value(MEMORY, lambda v: v < 10, "app1 under 10 % memory available", timeout=60)
        alert = as_alertmanager(wait_for_alert("LowMemory", ("pending", "firing"), timeout=60, host="app1"))
        before = service_state()

        dry = runbook("low_memory.yml", remediate=False, alert=alert)
        assert dry.ok, dry.output
        assert dry.decision["cause"] == "a memory leak in the service", dry.decision
        assert dry.decision["restart"] == ["app1"] and dry.actions == []
        assert service_state() == before  # remediation off changes nothing
        assert prometheus_value(MEMORY) < 10

        run = runbook("low_memory.yml", remediate=True, alert=alert)
        assert run.ok, run.output
        assert run.decision["cause"] == "a memory leak in the service" and run.decision["recovery"] == "recovered"
        assert [(a["host"], a["action"]) for a in run.actions] == [("app1", "restart residency-scheduler-backend (memory leak)")]
        assert run.record["status"] == "resolved"
        assert "memory leak" in run.report and "app1" in run.report
        after = service_state()
        assert after["app1"] != before["app1"] and after["app2"] == before["app2"]  # only the leaking instance
        assert prometheus_value(MEMORY) > 10 and app_health("app1").get("status") == "healthy"
        assert "memory_leak" not in app_health("app1").get("faults", {})  # the restart cleared it

        rerun = runbook("low_memory.yml", remediate=True, alert=alert)
        assert rerun.ok, rerun.output
        assert rerun.actions == [] and rerun.decision["low_memory_hosts"] == [] and not rerun.fleet_changed
        assert service_state() == after
