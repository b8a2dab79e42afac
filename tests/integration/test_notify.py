"""Each notification channel against a local receiver that records what it got (never the real services)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _incident as inc
from ansible_collections.sre.runbooks.plugins.module_utils._notify import deliver
from ansible_collections.sre.runbooks.plugins.modules import notify as notify_module
from tests.integration._incident_receivers import HttpReceiver, SmtpSink
from tests.unit.plugins.modules.utils import run_module

SLACK_SECRET = "T000/B000/slack-hook-secret-42"
ROUTING_KEY = "R0UTING-KEY-pd-secret-77"
SMTP_PASSWORD = "smtp-pass-secret-99"
GRAFANA_TOKEN = "glsa_grafana-secret-55"
STATUS_TOKEN = "status-token-secret-31"
SECRETS = (SLACK_SECRET, ROUTING_KEY, SMTP_PASSWORD, GRAFANA_TOKEN, STATUS_TOKEN)


@pytest.fixture(name="http")
def http_receiver():
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(name="smtp")
def smtp_sink():
    with SmtpSink() as sink:
        yield sink


def config_for(http, smtp=None, **extra):
    config = {
        "slack_webhook_url": f"{http.url}/slack/{SLACK_SECRET}",
        "pagerduty_url": f"{http.url}/pagerduty/v2/enqueue", "pagerduty_routing_key": ROUTING_KEY,
        "statuspage_url": f"{http.url}/status/hook", "statuspage_token": STATUS_TOKEN,
        "grafana_url": f"{http.url}/grafana", "grafana_token": GRAFANA_TOKEN, "grafana_dashboard_uid": "sched",
        "timeout": 2, "validate_certs": True,
    }
    if smtp is not None:
        config.update(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_username="runbooks", smtp_password=SMTP_PASSWORD,
                      mail_to=["oncall@example.org", "lead@example.org"], mail_from="sre@example.org")
    config.update(extra)
    return config


MESSAGE = {"subject": "[CRITICAL] HighErrorRate", "text": "[CRITICAL] Incident Update\nStatus: Investigating",
           "summary": "HighErrorRate (inc-1)", "severity": "critical", "dedup_key": "fp-abc", "incident_id": "inc-1",
           "alert_name": "HighErrorRate", "tags": ["HighErrorRate"], "time": "2026-11-23T09:00:00Z"}


def test_pagerduty_trigger_acknowledge_resolve_share_the_dedup_key(http):
    config = config_for(http)
    for event in ("trigger", "acknowledge", "resolve"):
        sent = deliver("pagerduty", event, MESSAGE, config, retries=0)
        assert sent["status"] == "sent" and sent["dedup_key"] == "fp-abc"
    events = [r["json"] for r in http.on("/pagerduty/v2/enqueue")]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"fp-abc"}
    assert {e["routing_key"] for e in events} == {ROUTING_KEY}
    trigger = events[0]["payload"]
    assert trigger["severity"] == "critical" and trigger["summary"] == "HighErrorRate (inc-1)" and trigger["class"] == "HighErrorRate"
    assert "payload" not in events[2]  # acknowledge/resolve carry no payload in Events v2
    # PagerDuty takes no "update": skipped, nothing sent.
    assert deliver("pagerduty", "update", MESSAGE, config)["status"] == "skipped" and len(http.on("/pagerduty")) == 3


def test_slack_webhook_and_thread_through_chat_post_message(http):
    sent = deliver("slack", "update", MESSAGE, config_for(http), retries=0)
    assert sent["status"] == "sent" and "no thread" in sent["thread"]
    assert http.on("/slack/T000")[0]["json"]["text"].startswith("*[CRITICAL] HighErrorRate*\n[CRITICAL] Incident Update")
    api = config_for(http, slack_webhook_url="", slack_token="xoxb-slack-token-secret", slack_channel="#incidents",
                     slack_api_url=f"{http.url}/slack/api/chat.postMessage")
    first = deliver("slack", "trigger", MESSAGE, api, retries=0)
    second = deliver("slack", "update", {**MESSAGE, "thread_ts": first["thread_ts"]}, api, retries=0)
    posts = http.on("/slack/api")
    assert posts[0]["json"]["channel"] == "#incidents" and "thread_ts" not in posts[0]["json"]
    assert posts[1]["json"]["thread_ts"] == first["ts"] == second["thread_ts"]
    assert posts[0]["headers"]["Authorization"] == "Bearer xoxb-slack-token-secret"


def test_statuspage_and_grafana(http):
    config = config_for(http)
    assert deliver("statuspage", "update", {**MESSAGE, "impact": "Service", "status": "investigating"}, config)["status"] == "sent"
    page = http.on("/status/hook")[0]
    assert page["json"]["incident_id"] == "inc-1" and page["json"]["status"] == "investigating" and page["json"]["impact"] == "Service"
    assert page["headers"]["Authorization"] == f"Bearer {STATUS_TOKEN}"
    annotated = deliver("grafana", "remediation", {**MESSAGE, "summary": "rolled back v2 on app1"}, config)
    assert annotated["status"] == "sent" and annotated["annotation_id"] == 1
    note = http.on("/grafana/api/annotations")[0]
    assert note["json"]["time"] == 1795424400000  # 2026-11-23T09:00:00Z in ms
    assert note["json"]["tags"] == ["incident", "remediation", "HighErrorRate"] and note["json"]["dashboardUID"] == "sched"
    assert note["json"]["text"] == "rolled back v2 on app1" and note["headers"]["Authorization"] == f"Bearer {GRAFANA_TOKEN}"


def test_email_through_smtp_with_login_and_reply_threading(http, smtp):
    config = config_for(http, smtp)
    first = deliver("email", "update", MESSAGE, config, retries=0)
    second = deliver("email", "resolve", {**MESSAGE, "subject": "Incident Resolution", "thread_message_id": first["message_id"]},
                     config, retries=0)
    assert first["status"] == second["status"] == "sent"
    assert [m["to"] for m in smtp.messages] == [["oncall@example.org", "lead@example.org"]] * 2
    assert smtp.messages[0]["subject"] == "[CRITICAL] HighErrorRate" and "Status: Investigating" in smtp.messages[0]["body"]
    assert smtp.messages[1]["headers"]["In-Reply-To"] == first["message_id"]
    assert smtp.messages[0]["headers"]["X-Incident-Id"] == "inc-1"
    assert smtp.logins == [("runbooks", SMTP_PASSWORD), ("runbooks", SMTP_PASSWORD)]


@pytest.mark.parametrize("behaviour", [503, "close"])
def test_a_channel_that_stays_down_is_retried_then_reported(http, behaviour):
    http.behaviour["/slack"] = behaviour
    waits = []
    sent = deliver("slack", "update", MESSAGE, config_for(http), retries=3, backoff=0.5, sleep=waits.append)
    assert sent["status"] == "failed" and sent["attempts"] == 4 and len(http.on("/slack")) == 4
    assert waits == [0.5, 1.0, 2.0]
    assert SLACK_SECRET not in json.dumps(sent) and sent["error"]


def test_a_channel_that_comes_back_is_sent(http):
    http.behaviour["/status"] = 500
    calls = []

    def recover(seconds):
        calls.append(seconds)
        http.behaviour.clear()

    sent = deliver("statuspage", "update", MESSAGE, config_for(http), retries=2, backoff=0, sleep=recover)
    assert sent["status"] == "sent" and sent["attempts"] == 2 and calls == [0]


def test_refused_request_is_not_retried(http):
    http.behaviour["/pagerduty"] = 400
    sent = deliver("pagerduty", "trigger", MESSAGE, config_for(http), retries=3, backoff=0, sleep=lambda s: None)
    assert sent["status"] == "failed" and sent["attempts"] == 1 and "HTTP 400" in sent["error"]


def test_smtp_down_is_reported_not_raised():
    from tests.integration.conftest import free_port  # pylint: disable=import-outside-toplevel

    config = {"smtp_host": "127.0.0.1", "smtp_port": free_port(), "mail_to": ["a@example.org"], "smtp_password": SMTP_PASSWORD,
              "smtp_username": "u", "timeout": 1}
    sent = deliver("email", "update", MESSAGE, config, retries=1, backoff=0, sleep=lambda s: None)
    assert sent["status"] == "failed" and sent["attempts"] == 2 and "cannot deliver" in sent["error"]


def test_unconfigured_channel_is_skipped():
    for channel in ("slack", "pagerduty", "email", "statuspage", "grafana"):
        sent = deliver(channel, "update" if channel != "pagerduty" else "trigger", MESSAGE, {})
        assert sent["status"] == "skipped" and sent["attempts"] == 0 and "configured" in sent["detail"]


def test_module_records_deliveries_and_threads_slack_in_the_incident(monkeypatch, http, tmp_path):
    directory, _record, _joined, _changed = inc.open_or_join(tmp_path, "HighErrorRate", "fp-abc", "critical", {}, "", "HighErrorRate",
                                                             "r", False, False)
    args = {"channel": "slack", "slack_token": "xoxb-module-secret", "slack_channel": "#incidents",
            "slack_api_url": f"{http.url}/slack/api/chat.postMessage", "incident_path": str(directory), "text": "first",
            "template": "status_update", "retries": 0}
    result, failed = run_module(monkeypatch, notify_module.main, args)
    assert not failed and result["status"] == "sent" and result["changed"]
    result, failed = run_module(monkeypatch, notify_module.main, {**args, "text": "second", "event": "resolve"})
    posts = http.on("/slack/api")
    assert "thread_ts" not in posts[0]["json"] and posts[1]["json"]["thread_ts"] == "1001.000100"
    record = inc.load(directory)
    assert [(n["channel"], n["event"], n["status"], n["template"]) for n in record["notifications"]] == [
        ("slack", "update", "sent", "status_update"), ("slack", "resolve", "sent", "status_update")]
    http.behaviour["/slack"] = 500
    result, failed = run_module(monkeypatch, notify_module.main, {**args, "backoff": 0, "retries": 1})
    assert not failed and result["status"] == "failed" and result["attempts"] == 2 and not result["changed"]
    text = "".join(p.read_text() for p in directory.iterdir() if p.is_file())
    assert "xoxb-module-secret" not in text and "failed" in text


def test_module_check_mode_sends_nothing(monkeypatch, http):
    result, failed = run_module(monkeypatch, notify_module.main, {
        "channel": "statuspage", "statuspage_url": f"{http.url}/status/hook", "_ansible_check_mode": True})
    assert not failed and result["status"] == "check_mode" and http.requests == []


def test_module_rejects_bad_time(monkeypatch):
    result, failed = run_module(monkeypatch, notify_module.main, {"channel": "grafana", "time": "yesterday"})
    assert failed and "time:" in result["msg"]
