"""SlowResponseTime: every API request on app1 waits 2.5 s first (fault slow_responses, until the service restarts)
while app2, PostgreSQL and the cache are fine. The runbook finds the slow endpoints and instance, rules out the
database (slow queries, pool), the cache and the resources, decides app1 is degraded, restarts that one instance
(health-gated) and the p95 falls back under 2 s."""

from __future__ import annotations

from harness import app_health, as_alertmanager, fault, prometheus_value, service_state, wait_for_alert, wait_for_value

P95 = ('histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket'
       '{job="residency-scheduler-backend",host="app1",handler=~"/api/.*"}[30s])))')


def test_slow_response_time(runbook):
    with fault("slow_responses", "--hosts", "app1"):
        wait_for_value(P95, lambda v: v > 2, "app1's p95 above 2 s", timeout=60)
        alert = as_alertmanager(wait_for_alert("SlowResponseTime", ("pending", "firing"), timeout=60, host="app1"))
        before = service_state()

        dry = runbook("slow_response_time.yml", remediate=False, alert=alert)
        assert dry.ok, dry.output
        assert dry.decision["cause"].startswith("degraded instance"), dry.decision
        assert dry.decision["restart"] == ["app1"] and dry.decision["slow_instances"] == ["app1"] and dry.actions == []
        assert any(e.startswith("/api/v1/") for e in dry.decision["slow_endpoints"]), dry.decision
        assert service_state() == before  # remediation off changes nothing

        run = runbook("slow_response_time.yml", remediate=True, alert=alert)
        assert run.ok, run.output
        assert run.decision["cause"].startswith("degraded instance") and run.decision["recovery"] == "recovered", run.decision
        assert [a["host"] for a in run.actions] == ["app1"] and run.actions[0]["action"].startswith("restart residency-scheduler-backend")
        assert "Slow endpoints" in run.report and "Database (step 1)" in run.report
        after = service_state()
        assert after["app1"] != before["app1"] and after["app2"] == before["app2"]
        assert "slow_responses" not in app_health("app1").get("faults", {})
        assert prometheus_value(P95.replace("[30s]", "[15s]")) < 2

        rerun = runbook("slow_response_time.yml", remediate=True, alert=alert)
        assert rerun.ok, rerun.output
        assert rerun.actions == [] and rerun.decision["slow_instances"] == [] and not rerun.fleet_changed
        assert service_state() == after
