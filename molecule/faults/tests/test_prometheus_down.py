"""Prometheus down: HighErrorRate's triage still reads every app host's logs and releases, and its report lists the
Prometheus queries (endpoint error rates, onset, current ratio) as not checked. Prometheus back, a rerun joins the
incident and checks them."""

from conftest import unchecked_text, unit_stopped


def test_prometheus_down(runs):
    with unit_stopped("mon1", "prometheus"):
        run = runs.run("high_error_rate.yml")
    assert run.ok, run.output[-4000:]
    assert "prometheus" in unchecked_text(run), run.record.get("unchecked")
    assert "## Could not check" in run.report and "Prometheus" in run.report.split("## Could not check")[1]
    assert run.decision["current_error_ratio"] == "unknown"
    assert run.recap["app1"]["unreachable"] == 0 and run.recap["app2"]["unreachable"] == 0

    rerun = runs.run("high_error_rate.yml")
    assert rerun.ok, rerun.output[-4000:]
    assert rerun.record["id"] == run.record["id"]  # joined
    assert rerun.record["unchecked"] == run.record["unchecked"]  # nothing new could not be checked
    assert rerun.decision["current_error_ratio"] != "unknown"
