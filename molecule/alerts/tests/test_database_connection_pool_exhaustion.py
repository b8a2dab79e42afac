"""DatabaseConnectionPoolExhaustion: app1's backend checks connections out of its pool and never returns them (fault
pool_leak, until the service restarts). PostgreSQL has room and no open transaction or long statement: the runbook
names a connection leak in the application on app1, restarts that instance (health-gated) and the pool is back
under 90 %."""

from __future__ import annotations

from harness import app_health, as_alertmanager, fault, prometheus_value, service_state, wait_for_alert, wait_for_value

POOL = '(db_connections_active{host="app1"} / db_connections_max{host="app1"}) * 100'


def test_database_connection_pool_exhaustion(runbook):
    with fault("pool_leak", "--hosts", "app1"):
        wait_for_value(POOL, lambda v: v > 90, "app1's pool above 90 %", timeout=60)
        alert = as_alertmanager(wait_for_alert("DatabaseConnectionPoolExhaustion", ("pending", "firing"), timeout=60, host="app1"))
        before = service_state()

        dry = runbook("database_connection_pool_exhaustion.yml", remediate=False, alert=alert)
        assert dry.ok, dry.output
        assert "connection leak in the application on app1" in dry.decision["cause"], dry.decision
        assert dry.decision["restart"] == ["app1"] and dry.actions == []
        assert service_state() == before and prometheus_value(POOL) > 90  # remediation off changes nothing

        run = runbook("database_connection_pool_exhaustion.yml", remediate=True, alert=alert)
        assert run.ok, run.output
        assert "connection leak in the application on app1" in run.decision["cause"]
        assert [(a["host"], a["action"]) for a in run.actions] == [("app1", "restart residency-scheduler-backend (connection leak)")]
        assert run.record["status"] == "resolved"
        after = service_state()
        assert after["app1"] != before["app1"] and after["app2"] == before["app2"]
        assert prometheus_value(POOL) < 90 and app_health("app1").get("status") == "healthy"

        rerun = runbook("database_connection_pool_exhaustion.yml", remediate=True, alert=alert)
        assert rerun.ok, rerun.output
        assert rerun.actions == [] and rerun.decision["restart"] == [] and not rerun.fleet_changed
        assert service_state() == after
