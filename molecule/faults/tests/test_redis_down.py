"""Redis down: the LowCacheHitRate triage still reads the hit rate from Prometheus, reports Redis's statistics as not
checked and, with remediation on, changes nothing it cannot see (no maxmemory or TTL change). Redis back, a rerun joins
the incident and reads the statistics."""

from conftest import unchecked_text, unit_stopped


def test_redis_down(runs):
    with unit_stopped("cache1", "redis-server"):
        run = runs.run("low_cache_hit_rate.yml", remediate=True)
    assert run.ok, run.output[-4000:]
    unchecked = unchecked_text(run)
    assert "redis" in unchecked, run.record.get("unchecked")
    assert "## Could not check" in run.report and "Redis" in run.report.split("## Could not check")[1]
    assert run.actions == [] and not run.fleet_changed

    rerun = runs.run("low_cache_hit_rate.yml")
    assert rerun.ok, rerun.output[-4000:]
    assert rerun.record["id"] == run.record["id"]
    assert rerun.record["unchecked"] == run.record["unchecked"]
