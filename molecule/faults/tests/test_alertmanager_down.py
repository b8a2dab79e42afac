"""Alertmanager down: no runbook asks Alertmanager anything (the alerts it reviews are Prometheus's, an alert reaches a
run through EDA or -e), so the Initial Assessment runs whole: the alerts of the last hour are reviewed from
Prometheus and nothing is reported as not checked."""

from conftest import prometheus_value, unchecked_text, unit_stopped


def test_alertmanager_down(runs):
    with unit_stopped("mon1", "prometheus-alertmanager"):
        # Prometheus itself sees its Alertmanager gone (its notifications fail), the runbooks must not care.
        run = runs.run("initial_assessment.yml")
    assert run.ok, run.output[-4000:]
    assert unchecked_text(run) == "[]", run.record.get("unchecked")
    assert "## Could not check" not in run.report
    assert "alerts_last_hour" in run.decision.get("gather", run.decision) or "alerts" in run.report.lower()
    assert prometheus_value("up") is not None
