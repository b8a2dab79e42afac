"""LowCacheHitRate: Redis is flushed and the running backends cache schedule blocks for 50 ms (fault cache_flush: a
runtime TTL override, until the services restart). The runbook finds keys expiring before they are read again and
adjusts the TTL the real way: SCHEDULE_CACHE_TTL in each backend's environment file, then a rolling restart (one
instance at a time, health-gated) so the processes use it; the hit rate is back above 70 %."""

from __future__ import annotations

from harness import (APP_HOSTS, PORT_OFFSET, as_alertmanager, fault, file_digest, lab_ssh, prometheus_value,
                     service_state, wait_for_alert, wait_for_value)

HIT_RATE = ('sum(rate(cache_hits_total{job="residency-scheduler-backend"}[30s])) / (sum(rate(cache_hits_total'
            '{job="residency-scheduler-backend"}[30s])) + sum(rate(cache_misses_total{job="residency-scheduler-backend"}[30s])))')
ENV = "/etc/default/residency-scheduler-backend"


def state() -> dict:
    """What the remediation may change: the backends' processes, their environment files, Redis's memory limit."""
    return {"services": service_state(), "env": {h: file_digest(h, ENV) for h in APP_HOSTS},
            "maxmemory": lab_ssh("cache1", f"redis-cli -p {16379 + PORT_OFFSET} CONFIG GET maxmemory").split()}


def test_low_cache_hit_rate(runbook):
    with fault("cache_flush"):
        wait_for_value(HIT_RATE, lambda v: v < 0.7, "hit rate under 70 %", timeout=60)
        alert = as_alertmanager(wait_for_alert("LowCacheHitRate", ("pending", "firing"), timeout=60))
        before = state()

        dry = runbook("low_cache_hit_rate.yml", remediate=False, alert=alert)
        assert dry.ok, dry.output
        assert "expire too soon" in dry.decision["cause"], dry.decision
        assert dry.actions == [] and state() == before  # remediation off changes nothing

        run = runbook("low_cache_hit_rate.yml", remediate=True, alert=alert)
        assert run.ok, run.output
        assert "expire too soon" in run.decision["cause"] and run.decision["recovery"] == "recovered", run.decision
        actions = [(a["host"], a["action"]) for a in run.actions]
        assert [h for h, a in actions if a == "set the schedule cache TTL"] == list(APP_HOSTS)
        assert [h for h, a in actions if a.startswith("restart ")] == list(APP_HOSTS)  # one at a time, in order
        assert run.record["status"] == "resolved"
        after = state()
        assert after["maxmemory"] == before["maxmemory"]  # not evictions: memory left alone
        assert all(after["env"][h] != before["env"][h] and after["services"][h] != before["services"][h] for h in APP_HOSTS)
        assert "SCHEDULE_CACHE_TTL=300" in lab_ssh("app1", f"grep ^SCHEDULE_CACHE_TTL= {ENV}")
        assert prometheus_value(HIT_RATE) > 0.7

        rerun = runbook("low_cache_hit_rate.yml", remediate=True, alert=alert)
        assert rerun.ok, rerun.output
        assert rerun.actions == [] and not rerun.fleet_changed and state() == after
