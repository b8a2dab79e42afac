# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Severity and escalation, as both runbooks define them, for the incident role.

- ``alert_severity``: the alert runbook's Critical / Warning / Info with response time and channels.
- ``ml_severity``: the ML incident runbook's Severity 1–4 rules applied to gathered facts, with reasons.
- ``escalation_chain`` / ``next_escalation``: who is next (issue type → primary / secondary / after hours,
  or the ML runbook's ordered technical and security chains).
- ``is_after_hours``: whether a moment falls outside business hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ansible.errors import AnsibleFilterError

# The alert runbook's "Alert Severity Levels" table.
ALERT_LEVELS: dict[str, dict[str, Any]] = {
    "critical": {"response": "Immediate (24/7)", "response_minutes": 0, "channels": ["pagerduty", "email", "slack", "statuspage"],
                 "escalation": "PagerDuty + Email"},
    "warning": {"response": "Within 1 hour (business hours)", "response_minutes": 60, "channels": ["slack", "email"],
                "escalation": "Slack + Email"},
    "info": {"response": "Best effort", "response_minutes": None, "channels": ["slack"], "escalation": "Slack"},
}

# The ML runbook's Severity 1–4, named as the alert runbook's levels for channels and response.
ML_LEVELS = {1: ("Severity 1 (Critical)", "critical"), 2: ("Severity 2 (High)", "critical"),
             3: ("Severity 3 (Medium)", "warning"), 4: ("Severity 4 (Low)", "info")}

ML_DEFAULT_THRESHOLDS = {
    "response_time_seconds": 1.0,  # Severity 1: response time > 1 s
    "multiple_alerts": 2,  # Severity 1: multiple alerts firing
    "accuracy_floor": 0.80,  # Severity 2: model accuracy drop (TARGETS: accuracy >= 0.80)
    "accuracy_drop": 0.0,  # Severity 2: any drop beyond this (absolute) counts
    "high_error_rate": 0.05,  # Severity 2: high error rates; any error above 0 is a Severity 3 non-critical error
}

# Fact → (level, reason). Boolean facts: true means the condition holds.
_ML_FLAGS = {
    "system_unavailable": (1, "system unavailable"),
    "incorrect_predictions": (1, "incorrect predictions"),
    "data_breach": (1, "data breach"),
    "degraded_performance": (2, "degraded performance"),
    "resource_warnings": (2, "resource warnings"),
    "security_warnings": (2, "security warnings"),
    "minor_performance_issues": (3, "minor performance issues"),
    "single_component_issue": (3, "single component issue"),
    "non_critical_errors": (3, "non-critical errors"),
    "warning_alerts": (3, "warning alerts"),
    "cosmetic_issues": (4, "cosmetic issues"),
    "minor_bugs": (4, "minor bugs"),
    "single_error_alert": (4, "single error alert"),
    "performance_warnings": (4, "performance warnings"),
}
_ML_NUMERIC = ("response_time_seconds", "alerts_firing", "accuracy", "accuracy_drop", "error_rate", "components_affected")

ALERT_RUNBOOK_PATHS = {
    "application": {"primary": "On-call Engineer", "secondary": "Tech Lead", "after_hours": "PagerDuty"},
    "database": {"primary": "DBA", "secondary": "Infrastructure Team", "after_hours": "PagerDuty"},
    "security": {"primary": "Security Team", "secondary": "CISO", "after_hours": "PagerDuty"},
    "compliance": {"primary": "Program Director", "secondary": "ACGME Liaison", "after_hours": "PagerDuty"},
}
ML_RUNBOOK_CHAINS = {
    "technical": ["On-call Engineer", "System Administrator", "Technical Lead", "CTO"],
    "security": ["Security Team", "Security Lead", "CISO", "Legal Team"],
}
DEFAULT_BUSINESS_HOURS = {"days": [0, 1, 2, 3, 4], "start": 9, "end": 17, "utc_offset_hours": 0}


def alert_severity(level: Any, levels: dict[str, Any] | None = None) -> dict[str, Any]:
    """The alert runbook's level (critical, warning, info) with its response time and channels."""
    table = levels or ALERT_LEVELS
    name = str(level or "").strip().lower()
    aliases = {"sev1": "critical", "sev2": "critical", "sev3": "warning", "sev4": "info", "high": "critical", "page": "critical"}
    name = aliases.get(name, name)
    if name not in table:
        raise AnsibleFilterError(f"alert_severity: unknown severity {level!r}; expected one of {', '.join(sorted(table))}")
    return {"level": name, **table[name]}


def _number(facts: dict[str, Any], key: str) -> float | None:
    value = facts.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise AnsibleFilterError(f"ml_severity: {key} must be a number, got a boolean")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"ml_severity: {key} must be a number, got {value!r}") from None


def _count(value: Any) -> int:
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    return int(float(value)) if value not in (None, "", False) else 0


def ml_severity(facts: Any, thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply the ML runbook's Severity 1–4 rules to ``facts``; the highest matching level wins.

    Returns ``level`` (1–4), ``name`` (sev1…), ``label``, ``alert_level`` (critical/warning/info) and ``reasons``.
    """
    if not isinstance(facts, dict):
        raise AnsibleFilterError(f"ml_severity: expected a dict of gathered facts, got {type(facts).__name__}")
    limits = dict(ML_DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key not in ML_DEFAULT_THRESHOLDS:
            raise AnsibleFilterError(f"ml_severity: unknown threshold {key!r}; expected one of {', '.join(sorted(ML_DEFAULT_THRESHOLDS))}")
        limits[key] = float(value)
    unknown = sorted(set(facts) - set(_ML_FLAGS) - set(_ML_NUMERIC) - {"alerts"})
    if unknown:
        raise AnsibleFilterError(f"ml_severity: unknown fact(s) {', '.join(unknown)}; expected some of "
                                 f"{', '.join(sorted(set(_ML_FLAGS) | set(_ML_NUMERIC) | {'alerts'}))}")
    found: list[tuple[int, str]] = []
    for key, (level, reason) in _ML_FLAGS.items():
        value = facts.get(key)
        if value and (not isinstance(value, (list, dict)) or len(value) > 0):
            detail = f" ({', '.join(map(str, value))})" if isinstance(value, list) else ""
            found.append((level, reason + detail))
    response = _number(facts, "response_time_seconds")
    if response is not None and response > limits["response_time_seconds"]:
        found.append((1, f"response time {response:g} s > {limits['response_time_seconds']:g} s"))
    alerts = facts.get("alerts")
    firing = _count(facts.get("alerts_firing", alerts if alerts is not None else 0))
    if firing >= limits["multiple_alerts"]:
        found.append((1, f"multiple alerts firing ({firing})"))
    elif firing == 1:
        only = alerts[0] if isinstance(alerts, list) and alerts and isinstance(alerts[0], dict) else {}
        if str((only.get("labels") or only).get("severity", "")).lower() == "warning":
            found.append((3, "warning alert firing"))
        else:
            found.append((4, "single error alert"))
    accuracy, drop = _number(facts, "accuracy"), _number(facts, "accuracy_drop")
    if accuracy is not None and accuracy < limits["accuracy_floor"]:
        found.append((2, f"model accuracy drop: {accuracy:g} < floor {limits['accuracy_floor']:g}"))
    elif drop is not None and drop > limits["accuracy_drop"]:
        found.append((2, f"model accuracy drop of {drop:g}"))
    error_rate = _number(facts, "error_rate")
    if error_rate is not None and error_rate > limits["high_error_rate"]:
        found.append((2, f"high error rate {error_rate:.1%} > {limits['high_error_rate']:.1%}"))
    elif error_rate is not None and error_rate > 0:
        found.append((3, f"non-critical errors ({error_rate:.1%})"))
    components = facts.get("components_affected")
    if components is not None and _count(components) == 1:
        found.append((3, "single component issue"))
    level = min((lvl for lvl, _reason in found), default=4)
    reasons = [reason for lvl, reason in found if lvl == level] or ["no Severity 1–3 condition holds"]
    label, alert_level = ML_LEVELS[level]
    return {"level": level, "name": f"sev{level}", "label": label, "alert_level": alert_level, "reasons": reasons,
            "also": sorted({reason for lvl, reason in found if lvl != level})}


def escalation_chain(issue_type: Any, paths: dict[str, Any] | None = None, chains: dict[str, Any] | None = None,
                     after_hours: bool = False) -> list[dict[str, Any]]:
    """The ordered escalation levels for ``issue_type``.

    An issue type of the alert runbook's table gives primary then secondary; after hours the first level
    is reached through its after-hours route (PagerDuty). A chain of the ML runbook gives its people in order.
    """
    paths = ALERT_RUNBOOK_PATHS if paths is None else paths
    chains = ML_RUNBOOK_CHAINS if chains is None else chains
    name = str(issue_type or "").strip().lower()
    if name in paths:
        row = paths[name]
        levels = [{"contact": row["primary"], "via": row.get("after_hours") if after_hours else None},
                  {"contact": row["secondary"], "via": row.get("after_hours") if after_hours else None}]
    elif name in chains:
        levels = [{"contact": contact, "via": None} for contact in chains[name]]
    else:
        raise AnsibleFilterError(f"escalation_chain: unknown issue type {issue_type!r}; expected one of "
                                 f"{', '.join(sorted(set(paths) | set(chains)))}")
    return [{"level": index + 1, "path": name, "after_hours": bool(after_hours), **level} for index, level in enumerate(levels)]


def next_escalation(done: Any, issue_type: Any, paths: dict[str, Any] | None = None, chains: dict[str, Any] | None = None,
                    after_hours: bool = False) -> dict[str, Any]:
    """The level after those already in ``done`` (the record's escalations) for this path; the last one repeats, marked exhausted."""
    if done is None:
        done = []
    if not isinstance(done, list):
        raise AnsibleFilterError(f"next_escalation: expected the list of escalations already made, got {type(done).__name__}")
    chain = escalation_chain(issue_type, paths, chains, after_hours)
    made = len([e for e in done if isinstance(e, dict) and e.get("path") == chain[0]["path"]])
    index = min(made, len(chain) - 1)
    return {**chain[index], "exhausted": made >= len(chain), "of": len(chain)}


def is_after_hours(moment: Any = None, business_hours: dict[str, Any] | None = None) -> bool:
    """Whether ``moment`` (ISO string, default now) is outside business hours (days 0=Monday, hours local to utc_offset_hours)."""
    hours = {**DEFAULT_BUSINESS_HOURS, **(business_hours or {})}
    if moment in (None, "", "now"):
        when = datetime.now(timezone.utc)
    else:
        try:
            when = datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
        except ValueError:
            raise AnsibleFilterError(f"is_after_hours: cannot read the time {moment!r}; expected ISO 8601") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
    local = when.astimezone(timezone(timedelta(hours=float(hours["utc_offset_hours"]))))
    in_hours = local.weekday() in [int(d) for d in hours["days"]] and float(hours["start"]) <= local.hour + local.minute / 60 < float(hours["end"])
    return not in_hours


def incident_duration(start: Any, end: Any = None) -> str:
    """Human duration between two ISO times (end defaults to now), e.g. ``1 h 5 min``."""
    begin, finish = _parse(start, "incident_duration"), _parse(end, "incident_duration") if end else datetime.now(timezone.utc)
    minutes = max(int((finish - begin).total_seconds() // 60), 0)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def time_after(minutes: Any, start: Any = None) -> str:
    """ISO time ``minutes`` after ``start`` (default now), for "Next Update" lines and response deadlines."""
    begin = _parse(start, "time_after") if start else datetime.now(timezone.utc)
    try:
        delta = timedelta(minutes=float(minutes))
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"time_after: minutes must be a number, got {minutes!r}") from None
    return (begin + delta).astimezone(timezone.utc).isoformat(timespec="seconds")


def _parse(value: Any, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise AnsibleFilterError(f"{name}: cannot read the time {value!r}; expected ISO 8601") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class FilterModule:
    """sre.runbooks incident filters: severity and escalation."""

    def filters(self):
        return {
            "alert_severity": alert_severity,
            "ml_severity": ml_severity,
            "escalation_chain": escalation_chain,
            "next_escalation": next_escalation,
            "is_after_hours": is_after_hours,
            "incident_duration": incident_duration,
            "time_after": time_after,
        }
