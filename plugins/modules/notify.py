#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: notify
short_description: Send an incident notification to Slack, PagerDuty, email, a status page or Grafana
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Delivers one message of the incident lifecycle to one channel and, with O(incident_path), records the
    delivery in the incident's C(notifications) list.
  - V(slack) posts to an incoming webhook (O(slack_webhook_url)) or, with O(slack_token) and O(slack_channel),
    through C(chat.postMessage) so every later message of the incident goes into the first one's thread.
    Incoming webhooks return no message timestamp, so they cannot thread.
  - V(pagerduty) sends an Events API v2 event; O(event=trigger) (and V(escalate)) triggers, V(acknowledge) and
    V(resolve) act on the alert with the same O(dedup_key), which the incident role sets to the incident's.
  - V(email) sends through SMTP (STARTTLS and login optional); later mails of the incident reply to the first.
  - V(statuspage) POSTs a JSON document (incident id, event, status, severity, impact, title, message) to a webhook.
  - V(grafana) adds an annotation (C(POST /api/annotations)) tagged C(incident) and the event, at O(time).
  - Each delivery is retried O(retries) times with exponential O(backoff). A channel that stays down gives
    RV(status=failed) with the reason and the task does not fail; a channel without an endpoint gives
    RV(status=skipped). Webhook URLs, routing keys, tokens and passwords never appear in results or records.
options:
  channel:
    description: Where to send.
    type: str
    required: true
    choices: [slack, pagerduty, email, statuspage, grafana]
  event:
    description:
      - The lifecycle moment. PagerDuty accepts V(trigger), V(escalate) (a trigger), V(acknowledge) and V(resolve) and skips the others.
    type: str
    choices: [trigger, acknowledge, update, escalate, remediation, resolve]
    default: update
  subject:
    description: Subject line (email subject, Slack bold first line, status page title).
    type: str
  text:
    description: The message body, usually rendered from one of the runbooks' templates.
    type: str
    default: ""
  summary:
    description: One-line summary (PagerDuty summary, Grafana annotation text).
    type: str
  severity:
    description: The incident's severity (critical, warning, info or sev1 to sev4), mapped to PagerDuty's levels.
    type: str
  status:
    description: Incident status for the status page (investigating, identified, resolved, ...).
    type: str
  impact:
    description: Impact for the status page (service, performance, security).
    type: str
  dedup_key:
    description: The incident's dedup key; required by PagerDuty.
    type: str
  incident_id:
    description: The incident's id, sent to the status page and in an email header.
    type: str
  alert_name:
    description: Alert name (PagerDuty class).
    type: str
  source:
    description: PagerDuty source (the affected system).
    type: str
    default: sre.runbooks
  details:
    description: Extra key/values for PagerDuty custom_details.
    type: dict
    default: {}
  tags:
    description: Extra Grafana annotation tags (C(incident) and the event are always added).
    type: list
    elements: str
    default: []
  time:
    description: When the annotated moment happened (ISO 8601 or epoch seconds); defaults to now.
    type: str
  template:
    description: Name of the runbook template the text was rendered from; recorded with the delivery.
    type: str
  incident_path:
    description: The incident's directory; the delivery is appended to its C(notifications) and Slack/email threads are looked up there.
    type: path
  slack_webhook_url:
    description: Slack incoming webhook URL (a secret).
    type: str
  slack_token:
    description: Slack bot token for C(chat.postMessage) (threads per incident).
    type: str
  slack_channel:
    description: Slack channel for C(chat.postMessage).
    type: str
  slack_api_url:
    description: The C(chat.postMessage) URL.
    type: str
    default: https://slack.com/api/chat.postMessage
  pagerduty_url:
    description: PagerDuty Events API v2 endpoint.
    type: str
    default: https://events.pagerduty.com/v2/enqueue
  pagerduty_routing_key:
    description: PagerDuty integration (routing) key.
    type: str
  smtp_host:
    description: SMTP server.
    type: str
  smtp_port:
    description: SMTP port.
    type: int
    default: 25
  smtp_starttls:
    description: Upgrade the SMTP connection with STARTTLS.
    type: bool
    default: false
  smtp_username:
    description: SMTP login name; no login without it.
    type: str
  smtp_password:
    description: SMTP password.
    type: str
  mail_from:
    description: Sender address.
    type: str
    default: sre-runbooks@localhost
  mail_to:
    description: Recipients.
    type: list
    elements: str
    default: []
  statuspage_url:
    description: Status page webhook URL.
    type: str
  statuspage_token:
    description: Bearer token for the status page webhook.
    type: str
  grafana_url:
    description: Grafana base URL, for example V(http://127.0.0.1:3000).
    type: str
  grafana_token:
    description: Grafana service account token.
    type: str
  grafana_dashboard_uid:
    description: Dashboard to annotate; an organisation-wide annotation without it.
    type: str
  grafana_panel_id:
    description: Panel to annotate.
    type: int
  retries:
    description: Extra attempts after a failure that may pass (connection refused or closed, HTTP 5xx or 429, SMTP 4xx).
    type: int
    default: 3
  backoff:
    description: Seconds before the first retry; doubled for each further one (at most 30).
    type: float
    default: 1.0
  timeout:
    description: Seconds to wait for each attempt.
    type: float
    default: 10
  validate_certs:
    description: Verify TLS certificates.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: In check mode nothing is sent or recorded; RV(status) is V(check_mode).
notes:
  - A delivery is reported as changed when a message was sent; the incident role counts notifications as
    communication, not as a change to the managed systems.
"""

EXAMPLES = r"""
- name: Page the on-call engineer through PagerDuty
  sre.runbooks.notify:
    channel: pagerduty
    event: trigger
    dedup_key: "{{ incident_dedup_key }}"
    summary: HighErrorRate on the Residency Scheduler
    severity: critical
    pagerduty_routing_key: "{{ vault_pagerduty_routing_key }}"
    incident_path: "{{ incident_path }}"
  delegate_to: localhost

- name: Annotate the remediation in Grafana
  sre.runbooks.notify:
    channel: grafana
    event: remediation
    summary: rolled back v1.4.2 to v1.4.1 on app1
    tags: [HighErrorRate]
    grafana_url: http://grafana.example.org:3000
    grafana_token: "{{ vault_grafana_token }}"
  delegate_to: localhost
"""

RETURN = r"""
status:
  description: V(sent), V(skipped) (no endpoint configured, or an event the channel does not take), V(failed) or V(check_mode).
  returned: always
  type: str
  sample: sent
attempts:
  description: How many attempts were made.
  returned: always
  type: int
  sample: 1
error:
  description: Why the last attempt failed.
  returned: when RV(status=failed)
  type: str
  sample: "HTTP 500: down"
notification:
  description:
    - The delivery as recorded in the incident (time, channel, event, template, status, attempts, detail or error,
      and the channel's reference such as C(dedup_key), C(ts), C(annotation_id) or C(message_id)).
  returned: always
  type: dict
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._incident import IncidentError, load, update
from ansible_collections.sre.runbooks.plugins.module_utils._notify import CHANNELS, EVENTS, epoch_ms, deliver

CONFIG_KEYS = ("slack_webhook_url", "slack_token", "slack_channel", "slack_api_url", "pagerduty_url", "pagerduty_routing_key",
               "smtp_host", "smtp_port", "smtp_starttls", "smtp_username", "smtp_password", "mail_from", "mail_to",
               "statuspage_url", "statuspage_token", "grafana_url", "grafana_token", "grafana_dashboard_uid", "grafana_panel_id",
               "timeout", "validate_certs")
MESSAGE_KEYS = ("subject", "text", "summary", "severity", "status", "impact", "dedup_key", "incident_id", "alert_name", "source",
                "details", "tags", "time")


def _threads(incident_path: Path) -> dict[str, str]:
    """The first Slack ts and email Message-ID of the incident, so later messages join those threads."""
    found: dict[str, str] = {}
    for sent in load(incident_path).get("notifications") or []:
        if sent.get("status") != "sent":
            continue
        if sent.get("channel") == "slack" and sent.get("ts") and "thread_ts" not in found:
            found["thread_ts"] = sent.get("thread_ts") or sent["ts"]
        if sent.get("channel") == "email" and sent.get("message_id") and "thread_message_id" not in found:
            found["thread_message_id"] = sent["message_id"]
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "channel": {"type": "str", "required": True, "choices": list(CHANNELS)},
            "event": {"type": "str", "choices": list(EVENTS), "default": "update"},
            "subject": {"type": "str"},
            "text": {"type": "str", "default": ""},
            "summary": {"type": "str"},
            "severity": {"type": "str"},
            "status": {"type": "str"},
            "impact": {"type": "str"},
            "dedup_key": {"type": "str", "no_log": False},
            "incident_id": {"type": "str"},
            "alert_name": {"type": "str"},
            "source": {"type": "str", "default": "sre.runbooks"},
            "details": {"type": "dict", "default": {}},
            "tags": {"type": "list", "elements": "str", "default": []},
            "time": {"type": "str"},
            "template": {"type": "str"},
            "incident_path": {"type": "path"},
            "slack_webhook_url": {"type": "str", "no_log": True},
            "slack_token": {"type": "str", "no_log": True},
            "slack_channel": {"type": "str"},
            "slack_api_url": {"type": "str", "default": "https://slack.com/api/chat.postMessage"},
            "pagerduty_url": {"type": "str", "default": "https://events.pagerduty.com/v2/enqueue"},
            "pagerduty_routing_key": {"type": "str", "no_log": True},
            "smtp_host": {"type": "str"},
            "smtp_port": {"type": "int", "default": 25},
            "smtp_starttls": {"type": "bool", "default": False},
            "smtp_username": {"type": "str"},
            "smtp_password": {"type": "str", "no_log": True},
            "mail_from": {"type": "str", "default": "sre-runbooks@localhost"},
            "mail_to": {"type": "list", "elements": "str", "default": []},
            "statuspage_url": {"type": "str"},
            "statuspage_token": {"type": "str", "no_log": True},
            "grafana_url": {"type": "str"},
            "grafana_token": {"type": "str", "no_log": True},
            "grafana_dashboard_uid": {"type": "str"},
            "grafana_panel_id": {"type": "int"},
            "retries": {"type": "int", "default": 3},
            "backoff": {"type": "float", "default": 1.0},
            "timeout": {"type": "float", "default": 10},
            "validate_certs": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    config = {key: params[key] for key in CONFIG_KEYS}
    message = {key: params[key] for key in MESSAGE_KEYS}
    incident_path = Path(params["incident_path"]) if params["incident_path"] else None
    try:
        if params["time"]:
            epoch_ms(params["time"])
        if params["retries"] < 0 or params["retries"] > 20:
            raise ValueError(f"retries: expected 0 to 20, got {params['retries']}")
        if params["backoff"] < 0:
            raise ValueError(f"backoff: must not be negative, got {params['backoff']}")
        if incident_path is not None:
            message.update(_threads(incident_path))
        if module.check_mode:
            entry = {"channel": params["channel"], "event": params["event"], "status": "check_mode", "attempts": 0}
            module.exit_json(changed=False, status="check_mode", attempts=0, notification=entry)
        entry = deliver(params["channel"], params["event"], message, config, params["retries"], params["backoff"])
        if params["template"]:
            entry["template"] = params["template"]
        if incident_path is not None:
            update(incident_path, {"notifications": [entry]}, False)
    except (ValueError, IncidentError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"incident_path: cannot record the notification: {exc}")
    result = {"changed": entry["status"] == "sent", "status": entry["status"], "attempts": entry["attempts"], "notification": entry}
    if entry.get("error"):
        result["error"] = entry["error"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
