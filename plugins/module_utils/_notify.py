# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deliver one incident notification to one channel, retried, never raising for a channel that is down.

Channels: Slack (incoming webhook, or chat.postMessage with a token for threads per incident),
PagerDuty Events API v2 (trigger / acknowledge / resolve, one dedup key per incident), SMTP email,
a status-page webhook (generic JSON POST) and Grafana annotations.  A channel with no endpoint
configured is ``skipped``; one that keeps failing is ``failed`` with the reason; either way the
caller gets a result to record and the runbook goes on.  Secrets (webhook URLs, routing keys,
tokens, passwords) are scrubbed from every message this code produces.
"""

from __future__ import annotations

import http.client
import smtplib
import ssl
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Callable

from ansible_collections.sre.runbooks.plugins.module_utils._http import JsonHttpClient, ServiceError, ServiceUnreachable

CHANNELS = ("slack", "pagerduty", "email", "statuspage", "grafana")
EVENTS = ("trigger", "acknowledge", "update", "escalate", "remediation", "resolve")
PAGERDUTY_ACTIONS = {"trigger": "trigger", "escalate": "trigger", "acknowledge": "acknowledge", "resolve": "resolve"}
PAGERDUTY_SEVERITIES = {"critical": "critical", "sev1": "critical", "sev2": "error", "error": "error", "warning": "warning",
                        "sev3": "warning", "info": "info", "sev4": "info"}
MAX_BACKOFF = 30.0
REDACTED = "********"


class Retryable(Exception):
    """A failure worth another attempt (transport error, 5xx, 429, SMTP 4xx)."""


class Permanent(Exception):
    """A failure another attempt will not fix (4xx, authentication refused, bad answer)."""


def scrub(text: Any, secrets: list[str]) -> str:
    """``text`` with every secret replaced; short values are left alone (they would mangle ordinary words)."""
    out = "" if text is None else str(text)
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        out = out.replace(secret, REDACTED)
    return out


def epoch_ms(moment: Any) -> int:
    if moment in (None, ""):
        return int(time.time() * 1000)
    if isinstance(moment, (int, float)) and not isinstance(moment, bool):
        return int(moment if moment > 1e11 else moment * 1000)
    try:
        parsed = datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time: expected ISO 8601 or epoch seconds, got {moment!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def configured(channel: str, config: dict[str, Any]) -> str | None:
    """None when the channel can be used, else why it is skipped."""
    needs = {
        "slack": (config.get("slack_webhook_url") or (config.get("slack_token") and config.get("slack_channel")),
                  "no slack_webhook_url (or slack_token and slack_channel) configured"),
        "pagerduty": (config.get("pagerduty_routing_key"), "no pagerduty_routing_key configured"),
        "email": (config.get("smtp_host") and config.get("mail_to"), "no smtp_host or mail_to configured"),
        "statuspage": (config.get("statuspage_url"), "no statuspage_url configured"),
        "grafana": (config.get("grafana_url"), "no grafana_url configured"),
    }
    ok, reason = needs[channel]
    return None if ok else reason


def _post(url: str, payload: dict[str, Any], config: dict[str, Any], option: str, token: str | None = None) -> tuple[int, Any]:
    try:
        client = JsonHttpClient(url, timeout=float(config.get("timeout") or 10), validate_certs=bool(config.get("validate_certs", True)),
                                bearer_token=token, option_name=option)
    except ValueError as exc:
        raise Permanent(str(exc)) from None
    try:
        status, body = client.request("POST", "", data=payload)
    except ServiceUnreachable as exc:
        raise Retryable(str(exc)) from None
    except (http.client.HTTPException, ServiceError) as exc:
        raise Retryable(f"bad HTTP answer: {exc}") from None
    if status == 429 or status >= 500:
        raise Retryable(f"HTTP {status}: {str(body)[:200]}")
    if status >= 400:
        raise Permanent(f"HTTP {status}: {str(body)[:200]}")
    return status, body


def _slack(event: str, message: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    text = message.get("text") or message.get("summary") or ""
    if message.get("subject"):
        text = f"*{message['subject']}*\n{text}"
    if config.get("slack_token") and config.get("slack_channel"):
        # The Web API answers with the message's ts: later messages of the incident go into its thread.
        payload = {"channel": config["slack_channel"], "text": text}
        if message.get("thread_ts"):
            payload["thread_ts"] = message["thread_ts"]
        url = config.get("slack_api_url") or "https://slack.com/api/chat.postMessage"
        status, body = _post(url, payload, config, "slack_api_url", token=config["slack_token"])
        if not isinstance(body, dict) or not body.get("ok"):
            error = body.get("error") if isinstance(body, dict) else body
            if error in ("ratelimited", "service_unavailable", "internal_error"):
                raise Retryable(f"Slack answered {error}")
            raise Permanent(f"Slack refused the message: {error}")
        return {"detail": f"HTTP {status}, ts {body.get('ts')}", "ts": body.get("ts"), "slack_channel": body.get("channel"),
                "thread_ts": message.get("thread_ts") or body.get("ts")}
    payload = {"text": text}
    if message.get("slack_channel_override"):
        payload["channel"] = message["slack_channel_override"]
    status, body = _post(config["slack_webhook_url"], payload, config, "slack_webhook_url")
    result = {"detail": f"HTTP {status}"}
    if isinstance(body, dict) and body.get("ts"):
        result.update(ts=body.get("ts"), thread_ts=body.get("ts"))
    else:
        result["thread"] = "incoming webhooks return no message ts: no thread (set slack_token and slack_channel for threads)"
    return result


def _pagerduty(event: str, message: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    action = PAGERDUTY_ACTIONS[event]
    if not message.get("dedup_key"):
        raise Permanent("dedup_key: PagerDuty needs the incident's dedup key to acknowledge or resolve what it triggered")
    payload: dict[str, Any] = {"routing_key": config["pagerduty_routing_key"], "event_action": action,
                               "dedup_key": message["dedup_key"]}
    if action == "trigger":
        payload["payload"] = {
            "summary": (message.get("summary") or message.get("subject") or message.get("text") or "incident")[:1024],
            "source": message.get("source") or "sre.runbooks",
            "severity": PAGERDUTY_SEVERITIES.get(str(message.get("severity", "")).lower(), "error"),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "component": message.get("component") or None,
            "group": message.get("group") or None,
            "class": message.get("alert_name") or None,
            "custom_details": {**(message.get("details") or {}), "text": message.get("text") or ""},
        }
        payload["payload"] = {k: v for k, v in payload["payload"].items() if v is not None}
        payload["client"] = "sre.runbooks"
    url = config.get("pagerduty_url") or "https://events.pagerduty.com/v2/enqueue"
    status, body = _post(url, payload, config, "pagerduty_url")
    if isinstance(body, dict) and body.get("status") not in (None, "success"):
        raise Permanent(f"PagerDuty refused the event: {body.get('message')}")
    return {"detail": f"HTTP {status}, {action}", "dedup_key": message["dedup_key"], "event_action": action}


def _statuspage(event: str, message: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    payload = {
        "incident_id": message.get("incident_id"),
        "event": event,
        "status": message.get("status") or ("resolved" if event == "resolve" else "investigating"),
        "severity": message.get("severity"),
        "impact": message.get("impact"),
        "title": message.get("subject") or message.get("summary"),
        "message": message.get("text"),
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    status, _body = _post(config["statuspage_url"], payload, config, "statuspage_url", token=config.get("statuspage_token"))
    return {"detail": f"HTTP {status}"}


def _grafana(event: str, message: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    base = str(config["grafana_url"]).rstrip("/")
    payload: dict[str, Any] = {
        "time": epoch_ms(message.get("time")),
        "tags": list(dict.fromkeys(["incident", event] + [str(t) for t in message.get("tags") or []])),
        "text": message.get("summary") or message.get("subject") or message.get("text") or event,
    }
    if config.get("grafana_dashboard_uid"):
        payload["dashboardUID"] = config["grafana_dashboard_uid"]
    if config.get("grafana_panel_id") is not None:
        payload["panelId"] = int(config["grafana_panel_id"])
    status, body = _post(base + "/api/annotations", payload, config, "grafana_url", token=config.get("grafana_token"))
    annotation = body.get("id") if isinstance(body, dict) else None
    return {"detail": f"HTTP {status}, annotation {annotation}", "annotation_id": annotation, "annotation_time": payload["time"]}


def _email(event: str, message: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    mail = EmailMessage()
    mail["Subject"] = message.get("subject") or f"[{message.get('severity', 'incident')}] {message.get('summary', '')}"
    mail["From"] = config.get("mail_from") or "sre-runbooks@localhost"
    mail["To"] = ", ".join(config["mail_to"])
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    message_id = make_msgid(domain="sre.runbooks")
    mail["Message-ID"] = message_id
    if message.get("thread_message_id"):
        # Mail clients thread every message of the incident under the first one.
        mail["In-Reply-To"] = message["thread_message_id"]
        mail["References"] = message["thread_message_id"]
    if message.get("incident_id"):
        mail["X-Incident-Id"] = str(message["incident_id"])
    mail["X-Incident-Event"] = event
    mail.set_content(message.get("text") or message.get("summary") or "")
    timeout = float(config.get("timeout") or 10)
    try:
        with smtplib.SMTP(str(config["smtp_host"]), int(config.get("smtp_port") or 25), timeout=timeout) as smtp:
            smtp.ehlo()
            if config.get("smtp_starttls"):
                context = ssl.create_default_context()
                if not config.get("validate_certs", True):
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                smtp.starttls(context=context)
                smtp.ehlo()
            if config.get("smtp_username"):
                smtp.login(str(config["smtp_username"]), str(config.get("smtp_password") or ""))
            refused = smtp.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        raise Permanent(f"SMTP authentication refused ({exc.smtp_code})") from None
    except smtplib.SMTPResponseException as exc:
        error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        raise (Retryable(error) if 400 <= exc.smtp_code < 500 else Permanent(error)) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise Permanent(f"SMTP refused every recipient: {', '.join(exc.recipients)}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise Retryable(f"cannot deliver through {config['smtp_host']}:{config.get('smtp_port') or 25}: {exc}") from None
    detail = f"accepted for {len(config['mail_to']) - len(refused)} recipient(s)"
    if refused:
        detail += f", refused {', '.join(refused)}"
    return {"detail": detail, "message_id": message_id, "subject": mail["Subject"]}


SENDERS: dict[str, Callable[[str, dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "slack": _slack, "pagerduty": _pagerduty, "email": _email, "statuspage": _statuspage, "grafana": _grafana,
}


def secrets_of(config: dict[str, Any]) -> list[str]:
    """Every configured secret, and the parts of a webhook URL that carry one (its path)."""
    values = [config.get(k) for k in ("slack_webhook_url", "slack_token", "pagerduty_routing_key", "smtp_password",
                                      "statuspage_token", "grafana_token")]
    url = config.get("slack_webhook_url")
    if url and "/" in str(url).split("://", 1)[-1]:
        values.append("/" + str(url).split("://", 1)[-1].split("/", 1)[1])
    return [str(v) for v in values if v]


def deliver(channel: str, event: str, message: dict[str, Any], config: dict[str, Any], retries: int = 3,
            backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Send with up to ``retries`` extra attempts; return the delivery record (status sent, skipped or failed)."""
    if channel not in CHANNELS:
        raise ValueError(f"channel: expected one of {', '.join(CHANNELS)}, got {channel!r}")
    if event not in EVENTS:
        raise ValueError(f"event: expected one of {', '.join(EVENTS)}, got {event!r}")
    if retries < 0 or backoff < 0:
        raise ValueError("retries and backoff: must not be negative")
    secrets = secrets_of(config)
    entry: dict[str, Any] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "channel": channel,
                             "event": event, "attempts": 0}
    reason = configured(channel, config)
    if reason is None and channel == "pagerduty" and event not in PAGERDUTY_ACTIONS:
        reason = f"PagerDuty takes trigger, acknowledge and resolve events only, not {event}"
    if reason:
        return {**entry, "status": "skipped", "detail": reason}
    error = ""
    for attempt in range(retries + 1):
        entry["attempts"] = attempt + 1
        try:
            outcome = SENDERS[channel](event, message, config)
        except Retryable as exc:
            error = str(exc)
            if attempt < retries:
                sleep(min(backoff * (2 ** attempt), MAX_BACKOFF))
            continue
        except (Permanent, ValueError) as exc:
            error = str(exc)
            break
        return {**entry, "status": "sent", **{k: scrub(v, secrets) if isinstance(v, str) else v for k, v in outcome.items()}}
    return {**entry, "status": "failed", "error": scrub(error, secrets)}
