"""Before any alert test: every target the alert rules read is scraped, and no alert fires on a healthy lab."""

from __future__ import annotations

import requests

from harness import PROMETHEUS_URL


def test_every_target_up_and_no_alert_firing():
    targets = requests.get(f"{PROMETHEUS_URL}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert targets and all(t["health"] == "up" for t in targets), [(t["labels"].get("job"), t["health"]) for t in targets]
    alerts = requests.get(f"{PROMETHEUS_URL}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"] == []
