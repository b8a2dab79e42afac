# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The incident record: one directory per incident with incident.json, report.md and report.html.

A record is opened (or joined, by dedup key) at the start of a run, gathers findings,
decisions, actions, notifications, escalations and what could not be checked, and is
rewritten atomically after each change so that a run killed at any point leaves a readable
record behind.  The ``sre.runbooks.incident_timeline`` callback appends every task of the run
to ``timeline.jsonl`` beside it (append-only, so it never races the writes of incident.json);
the reports show both.
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ansible_collections.sre.runbooks.plugins.module_utils._files import atomic_write as write_file_atomically

SCHEMA_VERSION = 2
OPEN_STATES = ("open", "acknowledged", "investigating", "identified", "mitigating")
ALL_STATES = OPEN_STATES + ("resolved", "closed")
TASK_LOG = "timeline.jsonl"
KINDS = ("alert", "acgme", "ml")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_LIST_KEYS = ("findings", "actions", "unchecked", "follow_ups", "notifications", "escalations")
_DICT_KEYS = ("decision", "documentation", "assessment")
# What the runbooks call a severity: the Residency Scheduler alerts' labels and the Heart Disease runbook's levels.
SEVERITIES = ("critical", "warning", "info", "sev1", "sev2", "sev3", "sev4", "1", "2", "3", "4")
_SCALAR_KEYS = ("severity", "title", "summary", "severity_info", "kind", "metric", "severity_reasons", "issue_type")

# What each runbook asks the record to document, in its own words (key, label).
DOCUMENTATION_REQUIREMENTS: dict[str, list[tuple[str, str]]] = {
    # Alert runbook › ACGMEViolationDetected › Documentation Required.
    "acgme": [
        ("violation_details", "Violation details"),
        ("affected_person", "Affected person"),
        ("justification", "Justification (if override)"),
        ("corrective_action", "Corrective action taken"),
        ("program_director_notification", "Program Director notification"),
    ],
    # ML incident runbook › Post-Incident › Documentation.
    "ml": [
        ("timeline", "Incident timeline"),
        ("actions_taken", "Actions taken"),
        ("root_cause", "Root cause"),
        ("recovery_steps", "Recovery steps"),
        ("lessons_learned", "Lessons learned"),
    ],
    # Alert runbook › General Incident Response › 6. Document.
    "alert": [
        ("root_cause", "Root cause"),
        ("incident_log", "Incident log"),
        ("tickets", "Bug/improvement tickets"),
    ],
}
QUIET_ACTIONS = ("ansible.builtin.validate_argument_spec", "validate_argument_spec")
POST_MORTEM_SECTIONS = ("impact", "root_cause", "what_went_well", "what_went_wrong", "action_items")


class IncidentError(Exception):
    """A problem with the record itself (bad directory, unreadable JSON)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string (``Z`` or offset) or epoch seconds as an aware datetime; None if unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def safe_name(text: str) -> str:
    """A string usable as a file name part: alert names come from outside."""
    return _NAME_UNSAFE.sub("-", text).strip("-.") or "incident"


def atomic_write(path: Path, text: str, mode: int = 0o640) -> None:
    """Write ``text`` to ``path`` so a reader sees the old or the new file, never half of one."""
    write_file_atomically(path, text, mode)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Serialise writers of one incident directory (two runs for the same alert)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _nolock() -> Iterator[None]:
    yield


def find_open(root: Path, dedup_key: str) -> Path | None:
    """The newest open incident directory under ``root`` with this dedup key."""
    if not root.is_dir():
        return None
    candidates = []
    for record_file in root.glob("*/incident.json"):
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("dedup_key") == dedup_key and record.get("status") in OPEN_STATES:
            candidates.append((record.get("opened_at", ""), str(record_file.parent)))
    return Path(max(candidates)[1]) if candidates else None


def load(directory: Path) -> dict[str, Any]:
    path = directory / "incident.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IncidentError(f"path: no incident record at {path}") from None
    except ValueError as exc:
        raise IncidentError(f"path: {path} is not valid JSON ({exc}); fix or move it aside") from None
    return upgrade(record)


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """Give a record written by an older version the keys this one expects."""
    for key in _LIST_KEYS + ("runs", "timeline", "next_steps", "severity_reasons"):
        record.setdefault(key, [])
    for key in _DICT_KEYS:
        record.setdefault(key, {})
    record.setdefault("kind", "alert")
    record.setdefault("acknowledged_at", None)
    record.setdefault("metric", None)
    record["schema_version"] = SCHEMA_VERSION
    return record


def new_record(alert_name: str, dedup_key: str, severity: str, alert: dict[str, Any], runbook: str,
               title: str, now: datetime, kind: str = "alert") -> dict[str, Any]:
    return upgrade({
        "schema_version": SCHEMA_VERSION,
        "id": f"{safe_name(alert_name)}-{now.strftime('%Y%m%dT%H%M%SZ')}",
        "title": title or alert_name,
        "alert_name": alert_name,
        "dedup_key": dedup_key,
        "runbook": runbook,
        "kind": kind,
        "severity": severity,
        "status": "open",
        "opened_at": iso(now),
        "updated_at": iso(now),
        "acknowledged_at": None,
        "resolved_at": None,
        "alert": alert,
    })


def merge(record: dict[str, Any], update_data: dict[str, Any], now: datetime) -> bool:
    """Fold ``update_data`` into ``record``; return whether anything changed."""
    upgrade(record)
    before = json.dumps(record, sort_keys=True, default=str)
    for key in _LIST_KEYS:
        for item in update_data.get(key) or []:
            if key == "actions" and isinstance(item, dict) and not item.get("time"):
                # An action without a time happened now (the runbook's "log all actions"); the same one
                # recorded twice by one run is still one action.
                untimed = [{k: v for k, v in a.items() if k != "time"} for a in record[key] if isinstance(a, dict)]
                if item not in untimed:
                    record[key].append({"time": iso(now), **item})
            elif item not in record[key]:
                record[key].append(item)
    for key in _DICT_KEYS:
        if update_data.get(key):
            record[key].update(update_data[key])
    if update_data.get("next_steps") is not None:
        record["next_steps"] = list(update_data["next_steps"])
    for key in _SCALAR_KEYS:
        if update_data.get(key):
            record[key] = update_data[key]
    status = update_data.get("status")
    if status:
        record["status"] = status
        if status in ("resolved", "closed") and not record.get("resolved_at"):
            record["resolved_at"] = iso(now)
        if status in OPEN_STATES and record.get("resolved_at"):
            # Reopened: the old resolution time no longer describes the incident.
            record["resolved_at"] = None
    if update_data.get("acknowledged") and not record.get("acknowledged_at"):
        record["acknowledged_at"] = iso(now)
    for event in update_data.get("events") or []:
        record["timeline"].append({"time": iso(now), **event})
    changed = json.dumps(record, sort_keys=True, default=str) != before
    if changed:
        record["updated_at"] = iso(now)
    return changed


def read_task_log(directory: Path) -> list[dict[str, Any]]:
    """The callback's task entries; a line cut short by a killed run is skipped, not fatal."""
    entries = []
    try:
        with open(directory / TASK_LOG, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
    except FileNotFoundError:
        return []
    return entries


def append_task_log(directory: Path, entries: list[dict[str, Any]]) -> None:
    """Append entries as JSON lines with one O_APPEND write each: concurrent runs never interleave a line."""
    fd = os.open(str(directory / TASK_LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        for entry in entries:
            os.write(fd, (json.dumps(entry, default=str, sort_keys=True) + "\n").encode("utf-8"))
    finally:
        os.close(fd)


# ---------------------------------------------------------------- report.md


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str], rows: list[Any]) -> list[str]:
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        values = [row.get(c) for c in columns] if isinstance(row, dict) else list(row)
        lines.append("| " + " | ".join(_cell(v) for v in values) + " |")
    return lines


def _action_line(action: dict[str, Any]) -> str:
    where = action.get("host") or action.get("target")
    host = f"**{where}**" if where else None
    head = " ".join(str(part) for part in (action.get("time"), host, action.get("action", action)) if part)
    result = action.get("result") or action.get("detail")
    return f"- {head}: {result}" if result else f"- {head}"


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def _duration(start: Any, end: Any) -> str | None:
    begin, finish = parse_time(start), parse_time(end)
    if not begin or not finish:
        return None
    minutes = int((finish - begin).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def documentation_items(record: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(label, text or None) for each item the runbook asks to document; None means still missing."""
    doc = record.get("documentation") or {}
    kind = record.get("kind") if record.get("kind") in DOCUMENTATION_REQUIREMENTS else "alert"
    items = []
    for key, label in DOCUMENTATION_REQUIREMENTS[kind]:
        value = _text(doc.get(key)) or None
        if value is None and key == "program_director_notification":
            sent = [n for n in record.get("notifications") or [] if n.get("template") == "acgme_notification"]
            if sent:
                value = "; ".join(f"{n.get('channel')} {n.get('status')} at {n.get('time')}" for n in sent)
        if value is None and key == "timeline" and (record.get("timeline") or record.get("task_count")):
            value = "see Timeline below"
        if value is None and key == "actions_taken" and record.get("actions"):
            value = "; ".join(_text(a.get("action")) for a in record["actions"])
        if value is None and key == "tickets":
            filed = [str(f) for f in record.get("follow_ups") or [] if str(f).lower().startswith("file ticket")]
            value = "; ".join(filed) or None
        if value is None and key == "incident_log":
            value = "this record (incident.json, report.md, report.html)"
        if value is None and key == "recovery_steps" and record.get("actions"):
            value = "; ".join(f"{a.get('action')} ({a.get('result', '')})" for a in record["actions"])
        items.append((label, value))
    return items


def split_notifications(notifications: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """(deliveries that were attempted, one line for those skipped): an unconfigured channel is one fact, not a row per message."""
    attempted = [n for n in notifications if n.get("status") != "skipped"]
    skipped: dict[str, int] = {}
    for sent in notifications:
        if sent.get("status") == "skipped":
            skipped[str(sent.get("channel"))] = skipped.get(str(sent.get("channel")), 0) + 1
    if not skipped:
        return attempted, ""
    channels = ", ".join(f"{channel} ({count})" for channel, count in skipped.items())
    return attempted, f"Not sent, channel not configured: {channels}."


def post_mortem_needed(record: dict[str, Any]) -> bool:
    """The alert runbook: create a post-mortem for critical incidents (Severity 1–2 of the ML runbook too)."""
    return str(record.get("severity", "")).lower() in ("critical", "sev1", "sev2", "1", "2")


def reported_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task entries a person reads: role argument checks are kept in timeline.jsonl but left out of the reports."""
    return [t for t in tasks if t.get("kind", "task") == "task" and t.get("action") not in QUIET_ACTIONS]


def merged_timeline(record: dict[str, Any], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record events and callback tasks in time order, each with time, source, what and detail."""
    rows = [{"time": e.get("time"), "source": "event", "host": "", "what": e.get("event", ""),
             "status": "", "detail": e.get("detail", "")} for e in record.get("timeline") or []]
    rows += [{"time": t.get("time"), "source": "task", "host": t.get("host", ""), "what": t.get("task", ""),
              "status": t.get("status", ""), "detail": t.get("detail", ""), "action": t.get("action", "")}
             for t in reported_tasks(tasks)]
    return sorted(rows, key=lambda row: (parse_time(row["time"]) or datetime.min.replace(tzinfo=timezone.utc)))


def render_markdown(record: dict[str, Any], tasks: list[dict[str, Any]] | None = None) -> str:
    """The report a person reads: decision first, then evidence, then what is left to do."""
    tasks = tasks or []
    out = [f"# {record['title']} — {record['status']}", ""]
    head = [
        f"- **Incident:** `{record['id']}`",
        f"- **Alert:** {record['alert_name']} · **Severity:** {record['severity']}",
        f"- **Opened:** {record['opened_at']} · **Updated:** {record['updated_at']}",
    ]
    if record.get("acknowledged_at"):
        head.append(f"- **Acknowledged:** {record['acknowledged_at']}")
    if record.get("resolved_at"):
        duration = _duration(record["opened_at"], record["resolved_at"])
        head.append(f"- **Resolved:** {record['resolved_at']}" + (f" · **Duration:** {duration}" if duration else ""))
    if record.get("runbook"):
        head.append(f"- **Runbook:** {record['runbook']}")
    if record.get("severity_info"):
        head.append(f"- **Response:** {record['severity_info']}")
    if record.get("severity_reasons"):
        head.append(f"- **Severity because:** {'; '.join(str(r) for r in record['severity_reasons'])}")
    out += head + [""]
    if record.get("summary"):
        out += ["## Summary", "", record["summary"], ""]
    decision = record.get("decision") or {}
    if decision:
        out += ["## Decision", ""]
        for key, value in decision.items():
            label = key.replace("_", " ").capitalize()
            out.append(f"- **{label}:** {value if not isinstance(value, (dict, list)) else json.dumps(value)}")
        out.append("")
    if record.get("findings"):
        out += ["## Findings", ""]
        for finding in record["findings"]:
            where = f" ({finding['host']})" if finding.get("host") else ""
            out += [f"### {finding.get('title', 'Finding')}{where}", ""]
            if finding.get("summary"):
                out += [finding["summary"], ""]
            table = finding.get("table")
            if table and table.get("rows"):
                out += _table(table["columns"], table["rows"]) + [""]
    items = record.get("actions") or []
    out += ["## Actions taken", ""]
    if items:
        out += [_action_line(item) for item in items] + [""]
    else:
        out += ["None: this run only investigated (remediation is off)." if not record.get("remediate") else "None.", ""]
    if record.get("unchecked"):
        out += ["## Could not check", ""] + [
            f"- {u.get('what', u)}{' on **' + u['host'] + '**' if u.get('host') else ''}: {u.get('reason', '')}"
            for u in record["unchecked"]] + [""]
    if record.get("next_steps"):
        out += ["## Next steps", ""] + [f"- [ ] {s}" for s in record["next_steps"]] + [""]
    if record.get("escalations"):
        out += ["## Escalations", ""] + _table(["time", "level", "contact", "path", "reason"], [
            [e.get("time"), e.get("level"), e.get("contact"), e.get("path"), e.get("reason")] for e in record["escalations"]]) + [""]
    if record.get("notifications"):
        attempted, skipped_note = split_notifications(record["notifications"])
        out += ["## Notifications", ""]
        if attempted:
            out += _table(["time", "channel", "event", "template", "status", "attempts", "detail"], [
                [n.get("time"), n.get("channel"), n.get("event"), n.get("template"), n.get("status"), n.get("attempts"),
                 n.get("error") or n.get("detail") or ""] for n in attempted]) + [""]
        if skipped_note:
            out += [skipped_note, ""]
    out += ["## Documentation", "", f"What the runbook asks to document ({record.get('kind', 'alert')} incident):", ""]
    for label, value in documentation_items(record):
        out.append(f"- **{label}:** {value if value else '_not documented yet_'}")
    out.append("")
    if post_mortem_needed(record):
        doc = record.get("documentation") or {}
        pm = doc.get("post_mortem") or {}
        out += ["## Post-mortem", "", "Required for critical incidents (alert runbook, 6. Document)."
                + (f" Review: {pm['review']}." if isinstance(pm, dict) and pm.get("review") else ""), ""]
        for key in POST_MORTEM_SECTIONS:
            value = _text(pm.get(key)) if isinstance(pm, dict) else ""
            if not value and key == "root_cause":
                value = _text(doc.get("root_cause"))
            out.append(f"- **{key.replace('_', ' ').capitalize()}:** {value or '_to be written_'}")
        out.append("")
    if record.get("follow_ups"):
        out += ["## Follow-ups", ""] + [f"- [ ] {_text(s)}" for s in record["follow_ups"]] + [""]
    if record.get("timeline"):
        out += ["## Timeline", ""] + _table(["time", "event", "detail"], [
            [e.get("time"), e.get("event"), e.get("detail", "")] for e in record["timeline"]]) + [""]
    task_rows = reported_tasks(tasks)
    if task_rows:
        out += ["## Task log", "", "Every task of the runs, as recorded by the incident_timeline callback (secrets redacted).", ""]
        out += _table(["time", "host", "task", "action", "status", "what was done"], [
            [t.get("time"), t.get("host"), t.get("task"), t.get("action"), t.get("status"), (t.get("detail") or "")[:200]]
            for t in task_rows]) + [""]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- report.html

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#1d2430;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde3ea;padding-bottom:4px}
.meta{color:#4a5563}.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:#6b7685}
.sev-critical,.sev-sev1,.sev-sev2,.st-failed,.st-unreachable{background:#c62828}.sev-warning,.sev-sev3,.st-skipped{background:#b26a00}
.sev-info,.sev-sev4{background:#1565c0}.st-resolved,.st-closed,.st-ok,.st-sent{background:#2e7d32}.st-changed{background:#ad6800}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}th,td{border:1px solid #dde3ea;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f6f9}tr.task td{color:#333}tr.event td{background:#f7fbff;font-weight:600}.missing{color:#a33;font-style:italic}
svg text{font:11px system-ui,sans-serif;fill:#333}.chart{border:1px solid #dde3ea;border-radius:4px;background:#fcfdfe}
"""


def _esc(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def chart_markers(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Incident start, each remediation and the resolution, as vertical chart markers."""
    metric = record.get("metric") or {}
    markers = [dict(m) for m in metric.get("markers") or [] if isinstance(m, dict)]
    start = (record.get("alert") or {}).get("startsAt") or record.get("opened_at")
    markers.append({"time": start, "label": "incident start", "kind": "start"})
    for action in record.get("actions") or []:
        if action.get("time"):
            markers.append({"time": action["time"], "label": _text(action.get("action"))[:40], "kind": "remediation"})
    if record.get("resolved_at"):
        markers.append({"time": record["resolved_at"], "label": "resolved", "kind": "resolved"})
    return [m for m in markers if parse_time(m.get("time"))]


def render_chart(record: dict[str, Any], width: int = 760, height: int = 260) -> str:
    """The key metric around the incident as an inline SVG: series, threshold, markers. Empty string without data."""
    metric = record.get("metric") or {}
    points = []
    for point in metric.get("series") or []:
        if isinstance(point, (list, tuple)) and len(point) == 2 and point[1] is not None:
            moment = parse_time(point[0])
            try:
                value = float(point[1])
            except (TypeError, ValueError):
                continue
            if moment:
                points.append((moment.timestamp(), value))
    if len(points) < 2:
        return ""
    points.sort()
    markers = [(parse_time(m["time"]).timestamp(), m) for m in chart_markers(record)]
    threshold = metric.get("threshold")
    threshold = float(threshold) if isinstance(threshold, (int, float, str)) and _is_number(threshold) else None
    x_min = min([p[0] for p in points] + [m[0] for m in markers])
    x_max = max([p[0] for p in points] + [m[0] for m in markers])
    values = [p[1] for p in points] + ([threshold] if threshold is not None else [])
    y_min, y_max = min([0.0] + values), max(values) * 1.1 or 1.0
    left, right, top, bottom = 56, 16, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    x_span = (x_max - x_min) or 1.0
    y_span = (y_max - y_min) or 1.0

    def sx(ts: float) -> float:
        return left + (ts - x_min) / x_span * plot_w

    def sy(value: float) -> float:
        return top + plot_h - (value - y_min) / y_span * plot_h

    percent = bool(metric.get("percent", y_max <= 1.5))
    fmt = (lambda v: f"{v * 100:.0f} %") if percent else (lambda v: f"{v:.3g}")
    name = metric.get("name", "metric")
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(name)}">',
             f'<text x="{left}" y="14" font-weight="600">{_esc(name)}</text>']
    for i in range(5):
        value = y_min + y_span * i / 4
        y = sy(value)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e9ef"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_esc(fmt(value))}</text>')
    for i in range(5):
        ts = x_min + x_span * i / 4
        label = datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M" if x_span >= 600 else "%H:%M:%S")
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{sx(ts):.1f}" y="{height - 12}" text-anchor="{anchor}">{label}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#9aa5b1"/>')
    if threshold is not None:
        y = sy(threshold)
        parts.append(f'<line class="threshold" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#c62828" stroke-width="1.5" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{width - right - 4}" y="{y - 4:.1f}" text-anchor="end" fill="#c62828">threshold {_esc(fmt(threshold))}</text>')
    path = " ".join(f"{sx(ts):.1f},{sy(v):.1f}" for ts, v in points)
    area = f"{sx(points[0][0]):.1f},{sy(y_min):.1f} {path} {sx(points[-1][0]):.1f},{sy(y_min):.1f}"
    parts.append(f'<polygon points="{area}" fill="#1565c0" fill-opacity="0.12"/>')
    parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="#1565c0" stroke-width="2"/>')
    colours = {"start": "#c62828", "remediation": "#ef6c00", "resolved": "#2e7d32"}
    drawn: list[tuple[float, str]] = []
    for ts, marker in sorted(markers, key=lambda m: m[0]):
        x = sx(ts)
        # The same remediation on several hosts at once is one marker.
        if any(abs(x - seen_x) < 4 and marker.get("label") == seen_label for seen_x, seen_label in drawn):
            continue
        index = len(drawn)
        drawn.append((x, marker.get("label")))
        colour = colours.get(marker.get("kind"), "#6a1b9a")
        parts.append(f'<line class="marker marker-{_esc(marker.get("kind", "other"))}" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
                     f'y2="{top + plot_h}" stroke="{colour}" stroke-width="2"/>')
        # Labels near the right edge go to the left of their line, so they stay inside the chart.
        anchor, text_x = ("end", x - 3) if x > width - right - 160 else ("start", x + 3)
        parts.append(f'<text x="{text_x:.1f}" y="{top + 12 + (index % 3) * 12}" text-anchor="{anchor}" fill="{colour}">'
                     f'{_esc(marker.get("label", ""))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _html_table(columns: list[str], rows: list[list[Any]], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{_esc(row_classes[index])}"' if row_classes else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _badge(text: Any, prefix: str) -> str:
    return f'<span class="badge {prefix}-{_esc(text).lower()}">{_esc(text)}</span>' if text else ""


def render_html(record: dict[str, Any], tasks: list[dict[str, Any]] | None = None) -> str:
    """A self-contained page (inline CSS and SVG, no scripts, no external references)."""
    tasks = tasks or []
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{_esc(record['title'])} — {_esc(record['status'])}</title>", f"<style>{_CSS}</style></head><body>",
           f"<h1>{_esc(record['title'])} {_badge(record['status'], 'st')} {_badge(record['severity'], 'sev')}</h1>"]
    meta = [f"Incident <code>{_esc(record['id'])}</code>", f"alert {_esc(record['alert_name'])}",
            f"opened {_esc(record['opened_at'])}"]
    if record.get("acknowledged_at"):
        meta.append(f"acknowledged {_esc(record['acknowledged_at'])}")
    if record.get("resolved_at"):
        meta.append(f"resolved {_esc(record['resolved_at'])} ({_esc(_duration(record['opened_at'], record['resolved_at']))})")
    out.append(f'<p class="meta">{" · ".join(meta)}</p>')
    if record.get("severity_info") or record.get("severity_reasons"):
        because = f" · because: {_esc(record.get('severity_reasons'))}" if record.get("severity_reasons") else ""
        out.append(f'<p class="meta">{_esc(record.get("severity_info"))}{because}</p>')
    if record.get("summary"):
        out += ["<h2>Summary</h2>", f"<p>{_esc(record['summary'])}</p>"]
    chart = render_chart(record)
    if chart:
        out += ["<h2>Key metric</h2>", chart]
    if record.get("decision"):
        out += ["<h2>Decision</h2>", _html_table(["question", "answer"], [
            [k.replace("_", " "), json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in record["decision"].items()])]
    for finding in record.get("findings") or []:
        out.append(f"<h2>{_esc(finding.get('title', 'Finding'))}{' (' + _esc(finding['host']) + ')' if finding.get('host') else ''}</h2>")
        if finding.get("summary"):
            out.append(f"<p>{_esc(finding['summary'])}</p>")
        table = finding.get("table") or {}
        if table.get("rows"):
            out.append(_html_table(table.get("columns") or [], [r if isinstance(r, list) else [r] for r in table["rows"]]))
    out.append("<h2>Actions taken</h2>")
    out.append(_html_table(["time", "host", "action", "result"], [
        [a.get("time"), a.get("host"), a.get("action"), a.get("result")] for a in record["actions"]])
        if record.get("actions") else "<p>None.</p>")
    if record.get("escalations"):
        out += ["<h2>Escalations</h2>", _html_table(["time", "level", "contact", "path", "reason"], [
            [e.get("time"), e.get("level"), e.get("contact"), e.get("path"), e.get("reason")] for e in record["escalations"]])]
    if record.get("notifications"):
        attempted, skipped_note = split_notifications(record["notifications"])
        out.append("<h2>Notifications</h2>")
        if attempted:
            out.append(_html_table(["time", "channel", "event", "template", "status", "attempts", "detail"], [
                [n.get("time"), n.get("channel"), n.get("event"), n.get("template"), n.get("status"), n.get("attempts"),
                 n.get("error") or n.get("detail")] for n in attempted]))
        if skipped_note:
            out.append(f'<p class="meta">{_esc(skipped_note)}</p>')
    out.append("<h2>Documentation</h2><ul>")
    for label, value in documentation_items(record):
        out.append(f"<li><b>{_esc(label)}:</b> " + (_esc(value) if value else '<span class="missing">not documented yet</span>') + "</li>")
    out.append("</ul>")
    if record.get("next_steps") or record.get("follow_ups"):
        todo = (record.get("next_steps") or []) + (record.get("follow_ups") or [])
        out += ["<h2>Next steps and follow-ups</h2><ul>"] + [f"<li>{_esc(item)}</li>" for item in todo] + ["</ul>"]
    rows = merged_timeline(record, tasks)
    if rows:
        out += ["<h2>Timeline</h2>", _html_table(["time", "host", "what", "status", "detail"], [
            [r["time"], r["host"], r["what"], r["status"], (r["detail"] or "")[:240]] for r in rows], [r["source"] for r in rows])]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- reading and writing


def write_reports(directory: Path, record: dict[str, Any]) -> None:
    tasks = read_task_log(directory)
    atomic_write(directory / "report.md", render_markdown(record, tasks))
    atomic_write(directory / "report.html", render_html(record, tasks))


def save(directory: Path, record: dict[str, Any]) -> None:
    atomic_write(directory / "incident.json", json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
    write_reports(directory, record)


def refresh_reports(directory: Path) -> None:
    """Re-render the reports (e.g. after the callback added the last tasks of a run)."""
    with locked(directory):
        write_reports(directory, load(directory))


def open_or_join(root: Path, alert_name: str, dedup_key: str, severity: str, alert: dict[str, Any],
                 runbook: str, title: str, run_id: str, remediate: bool, check_mode: bool,
                 now: datetime | None = None, kind: str = "alert") -> tuple[Path, dict[str, Any], bool, bool]:
    """Return (directory, record, joined, changed). In check mode nothing is written."""
    now = now or utc_now()
    if root.exists() and not root.is_dir():
        raise IncidentError(f"incident_dir: {root} exists and is not a directory")
    with locked(root) if not check_mode else _nolock():
        existing = find_open(root, dedup_key)
        if existing is not None:
            record = load(existing)
            directory, joined = existing, True
        else:
            record = new_record(alert_name, dedup_key, severity, alert, runbook, title, now, kind)
            directory, joined = root / record["id"], False
            suffix = 1
            while directory.exists():
                suffix += 1
                directory = root / f"{record['id']}-{suffix}"
            record["id"] = directory.name
        record["remediate"] = bool(record.get("remediate")) or remediate
        record["runs"].append({"run_id": run_id, "started_at": iso(now), "remediate": remediate})
        merge(record, {"events": [{"event": "joined" if joined else "opened",
                                   "detail": f"run {run_id}{' (remediation on)' if remediate else ''}"}]}, now)
        if not check_mode:
            created = not directory.exists()
            directory.mkdir(parents=True, exist_ok=True)
            try:
                save(directory, record)
            except OSError as exc:
                if created:  # nothing of a new incident is left behind: no directory without a record
                    shutil.rmtree(directory, ignore_errors=True)
                raise IncidentError(f"incident_dir: cannot write the incident record in {directory}: {exc.strerror or exc}; "
                                    + ("nothing was recorded" if created else "incident.json is whole (written by rename, never in part)")) from None
    return directory, record, joined, True


def update(directory: Path, update_data: dict[str, Any], check_mode: bool,
           now: datetime | None = None) -> tuple[dict[str, Any], bool]:
    """Merge ``update_data`` into the record in ``directory``; return (record, changed)."""
    now = now or utc_now()
    with locked(directory) if not check_mode else _nolock():
        record = load(directory)
        changed = merge(record, update_data, now)
        if changed and not check_mode:
            try:
                save(directory, record)
            except OSError as exc:
                raise IncidentError(f"path: cannot write the incident record in {directory}: {exc.strerror or exc}; "
                                    "incident.json is whole (written by rename, never in part)") from None
    return record, changed
