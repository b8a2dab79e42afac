"""PostgreSQL at max_connections (the lab's pg_connections fault: idle sessions hold every slot a non-superuser may
take): the triage's own connection is refused, the report says PostgreSQL's activity could not be read and why, and
the pools are still read from Prometheus. Slots free again, a rerun joins the incident and reads the activity."""

from conftest import fault, psql, unchecked_text, wait_until


def test_postgresql_max_connections(runs):
    with fault("pg_connections"):
        wait_until(lambda: int(psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")[0][0]) >= 45,
                   "PostgreSQL's client slots taken")
        run = runs.run("database_connection_pool_exhaustion.yml")
    assert run.ok, run.output[-4000:]
    unchecked = unchecked_text(run)
    assert "postgresql activity" in unchecked and ("too many clients" in unchecked or "reserved" in unchecked), \
        run.record.get("unchecked")
    assert run.actions == [] and not run.fleet_changed

    rerun = runs.run("database_connection_pool_exhaustion.yml")
    assert rerun.ok, rerun.output[-4000:]
    assert rerun.record["id"] == run.record["id"]
    assert rerun.record["unchecked"] == run.record["unchecked"]
