"""PostgreSQL down: the DatabaseConnectionPoolExhaustion triage still reads the pools from Prometheus, reports
PostgreSQL's activity as not checked (naming the refused connection) and changes nothing. PostgreSQL back, a rerun
joins the incident and reads the activity."""

from conftest import unchecked_text, unit_stopped


def test_postgresql_down(runs):
    with unit_stopped("db1", "postgresql@15-main"):
        run = runs.run("database_connection_pool_exhaustion.yml")
    assert run.ok, run.output[-4000:]
    unchecked = unchecked_text(run)
    assert "postgresql activity" in unchecked and ("refused" in unchecked or "connect" in unchecked), run.record.get("unchecked")
    assert "## Could not check" in run.report and "PostgreSQL activity" in run.report.split("## Could not check")[1]
    assert run.actions == [] and not run.fleet_changed

    rerun = runs.run("database_connection_pool_exhaustion.yml")
    assert rerun.ok, rerun.output[-4000:]
    assert rerun.record["id"] == run.record["id"]
    assert rerun.record["unchecked"] == run.record["unchecked"]  # nothing new could not be checked
