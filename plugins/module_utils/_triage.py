# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions the runbooks ask for, as pure functions: error pattern, deployment correlation, onset."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

# The runbook's three named patterns, then "other". Order matters: a JWT error raised while
# reading the users table is an authentication problem first.
DEFAULT_PATTERNS: dict[str, str] = {
    "authentication": r"auth|jwt|jose|token|credential|unauthori[sz]ed|forbidden|permission|login|password|session expired|\b40[13]\b",
    "database": r"sqlalchemy|psycopg|asyncpg|database|\bdb\b|operationalerror|integrityerror|queuepool|connection pool|"
                r"too many connections|deadlock|could not connect|server closed the connection|statement timeout|relation .* does not exist",
    "validation": r"validation|pydantic|valueerror|schema|invalid|unprocessable|\b422\b|typeerror",
}


def _text_of(group: dict[str, Any]) -> str:
    """Everything that can name the error: its key, type and a sample message."""
    parts = [str(group.get(k, "")) for k in ("key", "exception_type", "type", "message", "fingerprint")]
    sample = group.get("sample")
    if isinstance(sample, dict):
        parts += [str(sample.get(k, "")) for k in ("exception_type", "message", "exception", "type", "value")]
        exception = sample.get("exception")
        if isinstance(exception, dict):
            parts += [str(exception.get("type", "")), str(exception.get("value", ""))]
    elif isinstance(sample, list):
        parts += [str(s) for s in sample]
    elif sample:
        parts.append(str(sample))
    return " ".join(parts).lower()


def error_label(group: dict[str, Any]) -> str:
    """A short name for an error group: its exception type when a sample has one, else its key."""
    sample = group.get("sample")
    exception = sample.get("exception") if isinstance(sample, dict) else None
    if isinstance(exception, dict) and exception.get("type"):
        return str(exception["type"])
    return str(group.get("exception_type") or group.get("key") or "")


def classify_errors(groups: list[dict[str, Any]], patterns: dict[str, str] | None = None) -> dict[str, Any]:
    """Which runbook pattern the errors follow, weighted by count."""
    compiled = {name: re.compile(expr, re.IGNORECASE) for name, expr in (patterns or DEFAULT_PATTERNS).items()}
    counts: dict[str, int] = {}
    top_type: dict[str, tuple[int, str]] = {}
    for group in groups or []:
        text = _text_of(group)
        count = int(group.get("count", 1) or 0)
        pattern = next((name for name, regex in compiled.items() if regex.search(text)), "other")
        counts[pattern] = counts.get(pattern, 0) + count
        label = error_label(group)
        if count > top_type.get(pattern, (0, ""))[0]:
            top_type[pattern] = (count, label)
    total = sum(counts.values())
    if not total:
        return {"pattern": "none", "share": 0.0, "total": 0, "by_pattern": {}, "dominant": ""}
    pattern = max(counts, key=lambda name: counts[name])
    return {
        "pattern": pattern,
        "share": round(counts[pattern] / total, 3),
        "total": total,
        "by_pattern": dict(sorted(counts.items(), key=lambda item: -item[1])),
        "dominant": top_type[pattern][1],
    }


def parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def error_onset(points: list[list[Any]], threshold: float, first_errors: list[Any] | None = None) -> Any:
    """Start of the latest unbroken run of ``[time, value]`` points above ``threshold`` (None if not above now).

    A range query only says the ratio crossed between two steps, up to a step late; with
    ``first_errors`` (first-seen times of the error groups in the logs) the onset is the earliest
    error logged between the last point below the threshold and the first one above it.
    """
    start = None
    for index, (_moment, value) in enumerate(points or []):
        if value is not None and value > threshold:
            start = index if start is None else start
        else:
            start = None
    if start is None:
        return None
    crossed = points[start][0]
    try:
        upper = parse_time(crossed)
        lower = parse_time(points[start - 1][0]) if start else None
        logged = sorted((parse_time(t), t) for t in first_errors or [] if t)
    except (TypeError, ValueError):
        return crossed
    inside = [raw for at, raw in logged if (lower is None or at > lower) and at <= upper]
    return inside[0] if inside else crossed


def deployment_correlation(deployments: list[dict[str, Any]], onset: Any, window_minutes: float = 120,
                           grace_minutes: float = 1) -> dict[str, Any]:
    """Was a release made current shortly before the errors began?

    ``deployments``: per host, ``{host, current, previous, deployed_at}`` as the release module lists them.
    A release deployed within ``window_minutes`` before the onset, or up to ``grace_minutes`` after it (clocks a
    little apart; the onset is the first error logged, so a minute is plenty, and a rollback made minutes after
    the errors began is never taken for their cause), correlates; its predecessor is the rollback target.
    """
    onset_at = parse_time(onset)
    if onset_at is None:
        return {"correlated": False, "reason": "error onset unknown", "hosts": [], "release": None, "rollback_to": None}
    suspects = []
    for item in deployments or []:
        deployed_at = parse_time(item.get("deployed_at"))
        if deployed_at is None:
            continue
        lead = (onset_at - deployed_at).total_seconds() / 60
        if -grace_minutes <= lead <= window_minutes:
            suspects.append({**item, "minutes_before_onset": round(lead, 1)})
    if not suspects:
        newest = max((parse_time(d.get("deployed_at")) for d in deployments or [] if d.get("deployed_at")), default=None)
        reason = "no deployment in the window" if newest is None else \
            f"newest deployment {round((onset_at - newest).total_seconds() / 60)} min before onset, outside the {window_minutes:g} min window"
        return {"correlated": False, "reason": reason, "hosts": [], "release": None, "rollback_to": None}
    first = min(suspects, key=lambda s: -s["minutes_before_onset"])
    return {
        "correlated": True,
        "reason": f"{first.get('current')} deployed {first['minutes_before_onset']} min before the errors began",
        "hosts": sorted({s.get("host", "") for s in suspects}),
        "release": first.get("current"),
        "rollback_to": first.get("previous"),
    }


def minutes_between(start: Any, end: Any) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else round((b - a) / timedelta(minutes=1), 1)


def merge_error_groups(per_host: list[dict[str, Any]], top: int = 10) -> list[dict[str, Any]]:
    """Combine each host's error groups into fleet-wide groups: counts summed, hosts listed, first sample kept."""
    merged: dict[str, dict[str, Any]] = {}
    for entry in per_host or []:
        host = entry.get("host", "")
        for group in entry.get("groups") or []:
            key = str(group.get("key"))
            slot = merged.setdefault(key, {**group, "count": 0, "hosts": []})
            slot["count"] += int(group.get("count", 0) or 0)
            if host and host not in slot["hosts"]:
                slot["hosts"].append(host)
            for field, pick in (("first_seen", min), ("last_seen", max)):
                values = [v for v in (slot.get(field), group.get(field)) if v]
                if values:
                    slot[field] = pick(values)
    return sorted(merged.values(), key=lambda g: -g["count"])[:top]


def _failure_reason(result: Any) -> str | None:
    """Why a registered result holds no evidence (unreachable host, failed module), or None if it does."""
    if not isinstance(result, dict):
        return "no result"
    if result.get("unreachable"):
        return f"host unreachable: {result.get('msg', '')}".strip(": ")
    if result.get("failed"):
        return str(result.get("msg") or "failed")
    if result.get("skipped"):
        return "skipped"
    return None


def fleet_evidence(evidence: list[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    """Fold each host's registered results (``{host, errors, deployments}``) into fleet-wide evidence.

    What could not be gathered becomes an ``unchecked`` entry naming the host and the reason,
    so the report says what was not looked at instead of silently leaving it out.
    """
    per_host_groups, deployments, unchecked, checked = [], [], [], []
    matched = 0
    for entry in evidence or []:
        host = entry.get("host", "")
        errors = entry.get("errors")
        reason = _failure_reason(errors)
        if reason:
            unchecked.append({"what": "error logs", "host": host, "reason": reason})
        else:
            checked.append(host)
            matched += int(errors.get("matched", 0) or 0)
            per_host_groups.append({"host": host, "groups": errors.get("groups") or []})
        deploys = entry.get("deployments")
        reason = _failure_reason(deploys)
        if reason:
            unchecked.append({"what": "recent deployments", "host": host, "reason": reason})
        else:
            # A release that became current again (rollback, re-deploy) counts from that moment.
            moments = [m for m in (deploys.get("deployed_at"), deploys.get("current_since")) if m]
            deployed_at = max(moments, key=parse_time) if moments else None
            deployments.append({"host": host, "current": deploys.get("current"), "previous": deploys.get("previous"),
                                "deployed_at": deployed_at})
    return {
        "groups": merge_error_groups(per_host_groups, top),
        "matched": matched,
        "hosts_checked": checked,
        "hosts_total": len(evidence or []),
        "deployments": deployments,
        "unchecked": unchecked,
    }
