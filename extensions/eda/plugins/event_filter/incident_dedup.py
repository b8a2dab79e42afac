"""ansible-rulebook event filter: the incident record decides whether an alert starts a runbook.

EDA's own ``throttle`` forgets everything when the rulebook restarts; the incident records the runbooks write
(``sre.runbooks.incident``, one directory per incident under the incident directory, ``incident.json`` with
``dedup_key`` and ``status``) do not. For every Alertmanager alert event this filter adds ``event.incident``:

- ``dir``: the incident directory it looked in (pass it on to the playbook as ``runbook_incident_dir``);
- ``key``: the dedup key, the alert's ``fingerprint`` (its ``alertname`` when there is none), which the
  runbooks' ``sre.runbooks.incident`` role uses as the record's ``dedup_key`` too;
- ``state``: for a firing alert ``new`` (no open incident and no run starting: start the runbook), ``open`` (an
  open incident has this key: a run already handles it) or ``starting`` (a run was started less than
  ``claim_seconds`` ago and has not opened its record yet); for a resolved alert ``open`` (close ``path``) or
  ``none``;
- ``path``: the open incident's directory, or an empty string.

A firing ``new`` alert leaves a claim (``<dir>/.eda-claims/<key>``, created exclusively, so two deliveries of
one alert cannot both see ``new``); the run's own record takes over once opened, and a claim older than
``claim_seconds`` no longer counts (a run that died before opening its record does not block the alert for
good). A resolved alert removes its claim.

    sources:
      - ansible.eda.alertmanager: {host: 127.0.0.1, port: 5000}
        filters:
          - sre.runbooks.incident_dedup:
              incident_dir: /var/lib/sre-runbooks/incidents   # default: $RUNBOOK_INCIDENT_DIR, then this path
              claim_seconds: 900
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

DEFAULT_INCIDENT_DIR = "/var/lib/sre-runbooks/incidents"
# plugins/module_utils/_incident.py OPEN_STATES: a record in one of these is an open incident
OPEN_STATES = ("open", "acknowledged", "investigating", "identified", "mitigating")
CLAIMS = ".eda-claims"


def find_open(root: Path, key: str) -> Path | None:
    """The newest open incident directory under ``root`` whose record has this dedup key."""
    if not root.is_dir():
        return None
    candidates = []
    for record_file in root.glob("*/incident.json"):
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("dedup_key") == key and record.get("status") in OPEN_STATES:
            candidates.append((str(record.get("opened_at", "")), str(record_file.parent)))
    return Path(max(candidates)[1]) if candidates else None


def _claim_path(root: Path, key: str) -> Path:
    return root / CLAIMS / (re.sub(r"[^A-Za-z0-9_.-]", "-", key).strip(".-") or "alert")


def claim(root: Path, key: str, claim_seconds: float, now: float | None = None) -> bool:
    """Take the claim on ``key``; False when a claim younger than ``claim_seconds`` is held already."""
    now = time.time() if now is None else now
    path = _claim_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _attempt in range(2):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < claim_seconds:
                return False
            path.unlink(missing_ok=True)  # stale: its run never opened a record
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "claimed_at": now}) + "\n")
        os.utime(path, (now, now))
        return True
    return False


def release(root: Path, key: str) -> None:
    _claim_path(root, key).unlink(missing_ok=True)


def main(event: dict[str, Any], incident_dir: str | None = None, claim_seconds: float = 900,
         now: float | None = None) -> dict[str, Any]:
    """Add ``event["incident"]`` to an alert event (events without an ``alert`` dict pass unchanged)."""
    alert = event.get("alert")
    if not isinstance(alert, dict):
        return event
    root = Path(incident_dir or os.environ.get("RUNBOOK_INCIDENT_DIR") or DEFAULT_INCIDENT_DIR)
    labels = alert.get("labels") if isinstance(alert.get("labels"), dict) else {}
    key = str(alert.get("fingerprint") or labels.get("alertname") or "alert")
    opened = find_open(root, key)
    if alert.get("status", "firing") == "resolved":
        release(root, key)
        state = "open" if opened else "none"
    elif opened:
        state = "open"
    else:
        state = "new" if claim(root, key, float(claim_seconds), now) else "starting"
    event["incident"] = {"dir": str(root), "key": key, "state": state, "path": str(opened or "")}
    return event
