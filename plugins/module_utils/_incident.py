# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The incident record: one directory per incident with incident.json and report.md.

A record is opened (or joined, by dedup key) at the start of a run, gathers findings,
decisions, actions and what could not be checked, and is rewritten atomically after each
change so that a run killed at any point leaves a readable record behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1
OPEN_STATES = ("open", "investigating", "identified", "mitigating")
ALL_STATES = OPEN_STATES + ("resolved", "closed")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class IncidentError(Exception):
    """A problem with the record itself (bad directory, unreadable JSON)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def safe_name(text: str) -> str:
    """A string usable as a file name part: alert names come from outside."""
    return _NAME_UNSAFE.sub("-", text).strip("-.") or "incident"


def atomic_write(path: Path, text: str, mode: int = 0o640) -> None:
    """Write ``text`` to ``path`` so a reader sees the old or the new file, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
            candidates.append((record.get("opened_at", ""), record_file.parent))
    return max(candidates)[1] if candidates else None


def load(directory: Path) -> dict[str, Any]:
    path = directory / "incident.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IncidentError(f"path: no incident record at {path}") from None
    except ValueError as exc:
        raise IncidentError(f"path: {path} is not valid JSON ({exc}); fix or move it aside") from None


def new_record(alert_name: str, dedup_key: str, severity: str, alert: dict[str, Any], runbook: str,
               title: str, now: datetime) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "id": f"{safe_name(alert_name)}-{now.strftime('%Y%m%dT%H%M%SZ')}",
        "title": title or alert_name,
        "alert_name": alert_name,
        "dedup_key": dedup_key,
        "runbook": runbook,
        "severity": severity,
        "status": "open",
        "opened_at": iso(now),
        "updated_at": iso(now),
        "resolved_at": None,
        "alert": alert,
        "runs": [],
        "timeline": [],
        "findings": [],
        "decision": {},
        "actions": [],
        "unchecked": [],
        "next_steps": [],
        "notifications": [],
        "follow_ups": [],
    }


def merge(record: dict[str, Any], update: dict[str, Any], now: datetime) -> bool:
    """Fold ``update`` into ``record``; return whether anything changed."""
    before = json.dumps(record, sort_keys=True)
    for key in ("findings", "actions", "unchecked", "follow_ups", "notifications"):
        for item in update.get(key) or []:
            if item not in record[key]:
                record[key].append(item)
    for key in ("decision",):
        if update.get(key):
            record[key].update(update[key])
    if update.get("next_steps") is not None:
        record["next_steps"] = list(update["next_steps"])
    for key in ("severity", "title", "summary", "severity_info"):
        if update.get(key):
            record[key] = update[key]
    status = update.get("status")
    if status:
        record["status"] = status
        if status in ("resolved", "closed") and not record.get("resolved_at"):
            record["resolved_at"] = iso(now)
    for event in update.get("events") or []:
        record["timeline"].append({"time": iso(now), **event})
    changed = json.dumps(record, sort_keys=True) != before
    if changed:
        record["updated_at"] = iso(now)
    return changed


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
    host = f"**{action['host']}**" if action.get("host") else None
    head = " ".join(str(part) for part in (action.get("time"), host, action.get("action", action)) if part)
    return f"- {head}: {action['result']}" if action.get("result") else f"- {head}"


def render_markdown(record: dict[str, Any]) -> str:
    """The report a person reads: decision first, then evidence, then what is left to do."""
    out = [f"# {record['title']} — {record['status']}", ""]
    head = [
        f"- **Incident:** `{record['id']}`",
        f"- **Alert:** {record['alert_name']} · **Severity:** {record['severity']}",
        f"- **Opened:** {record['opened_at']} · **Updated:** {record['updated_at']}",
    ]
    if record.get("resolved_at"):
        head.append(f"- **Resolved:** {record['resolved_at']}")
    if record.get("runbook"):
        head.append(f"- **Runbook:** {record['runbook']}")
    if record.get("severity_info"):
        head.append(f"- **Response:** {record['severity_info']}")
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
    sections = (
        ("actions", "Actions taken", _action_line),
        ("unchecked", "Could not check", lambda u: f"- {u.get('what', u)}{' on **' + u['host'] + '**' if u.get('host') else ''}: {u.get('reason', '')}"),
        ("next_steps", "Next steps", lambda s: f"- [ ] {s}"),
        ("follow_ups", "Follow-ups", lambda s: f"- [ ] {s}"),
        ("notifications", "Notifications", lambda n: f"- {n.get('time', '')} {n.get('channel', '')}: {n.get('status', '')}"),
    )
    for key, title, fmt in sections:
        items = record.get(key) or []
        if key == "actions" and not items:
            out += ["## Actions taken", "", "None: this run only investigated (remediation is off)." if not record.get("remediate") else "None.", ""]
            continue
        if items:
            out += [f"## {title}", ""] + [fmt(item) for item in items] + [""]
    if record.get("timeline"):
        out += ["## Timeline", ""] + _table(["time", "event", "detail"], [
            [e.get("time"), e.get("event"), e.get("detail", "")] for e in record["timeline"]]) + [""]
    return "\n".join(out).rstrip() + "\n"


def save(directory: Path, record: dict[str, Any]) -> None:
    atomic_write(directory / "incident.json", json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
    atomic_write(directory / "report.md", render_markdown(record))


def open_or_join(root: Path, alert_name: str, dedup_key: str, severity: str, alert: dict[str, Any],
                 runbook: str, title: str, run_id: str, remediate: bool, check_mode: bool,
                 now: datetime | None = None) -> tuple[Path, dict[str, Any], bool, bool]:
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
            record = new_record(alert_name, dedup_key, severity, alert, runbook, title, now)
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
            directory.mkdir(parents=True, exist_ok=True)
            save(directory, record)
    return directory, record, joined, True


@contextmanager
def _nolock() -> Iterator[None]:
    yield


def update(directory: Path, update_data: dict[str, Any], check_mode: bool,
           now: datetime | None = None) -> tuple[dict[str, Any], bool]:
    """Merge ``update_data`` into the record in ``directory``; return (record, changed)."""
    now = now or utc_now()
    with locked(directory) if not check_mode else _nolock():
        record = load(directory)
        changed = merge(record, update_data, now)
        if changed and not check_mode:
            save(directory, record)
    return record, changed
