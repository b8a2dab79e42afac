# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: incident_timeline
type: aggregate
short_description: Record every task of the run in the incident's timeline, secrets redacted
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - The runbooks' "Log all actions". Each task of the run (time, duration, host, task name, action,
    ok/changed/failed/skipped/unreachable and a short "what was done") is appended as one JSON line to
    C(timeline.jsonl) in the directory of the incident the run opened or joined.
  - The incident is learnt from the first C(sre.runbooks.incident) task result that carries a C(path); tasks that
    ran before it are kept in memory and written then. The file is append-only, so it never races the
    C(sre.runbooks.incident) module's writes of C(incident.json); at the end of the run the reports
    (C(report.md), C(report.html)) are rendered again so they show the whole run.
  - Secrets are never recorded. A C(no_log) task is recorded by name and status only. Values of keys that look secret
    (O(redact_keys)) are replaced, wherever they appear; so are the values of such variables set for the play
    (extra vars, play and inventory variables), bearer tokens and passwords in URLs.
requirements:
  - Enabled in C(ansible.cfg) C([defaults] callbacks_enabled = sre.runbooks.incident_timeline) (or C(ANSIBLE_CALLBACKS_ENABLED)).
options:
  fallback_dir:
    description:
      - Directory for C(timeline.jsonl) when the run opens no incident. Nothing is written for such a run when unset.
    type: path
    env:
      - name: SRE_RUNBOOKS_TIMELINE_FALLBACK_DIR
    ini:
      - section: callback_incident_timeline
        key: fallback_dir
  redact_keys:
    description:
      - Parts of key and variable names whose values are secrets (matched case-insensitively anywhere in the name).
    type: list
    elements: str
    default: [password, passwd, secret, token, api_key, apikey, authorization, routing_key, webhook_url, private_key, credential]
    env:
      - name: SRE_RUNBOOKS_TIMELINE_REDACT_KEYS
    ini:
      - section: callback_incident_timeline
        key: redact_keys
  detail_length:
    description: At most this many characters of "what was done" per task.
    type: int
    default: 300
    env:
      - name: SRE_RUNBOOKS_TIMELINE_DETAIL_LENGTH
    ini:
      - section: callback_incident_timeline
        key: detail_length
  refresh_reports:
    description: Render the incident's C(report.md) and C(report.html) again at the end of the run, with the whole task log.
    type: bool
    default: true
    env:
      - name: SRE_RUNBOOKS_TIMELINE_REFRESH_REPORTS
    ini:
      - section: callback_incident_timeline
        key: refresh_reports
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = sre.runbooks.incident_timeline
#
# [callback_incident_timeline]
# detail_length = 200
"""

import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ansible.plugins.callback import CallbackBase

from ansible_collections.sre.runbooks.plugins.module_utils._incident import append_task_log, refresh_reports

REDACTED = "********"
INCIDENT_ACTIONS = ("sre.runbooks.incident", "incident")
_MAX_HOSTS_SCANNED = 50
_MAX_ITEMS_DESCRIBED = 10


class CallbackModule(CallbackBase):
    """Append each task's outcome to the incident's timeline.jsonl."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "sre.runbooks.incident_timeline"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._directory: Path | None = None
        self._pending: list[dict[str, Any]] = []
        self._started: dict[str, float] = {}
        self._secrets: set[str] = set()
        self._key_pattern: re.Pattern[str] | None = None
        self._text_pattern: re.Pattern[str] | None = None
        self._run = f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}"
        self._playbook = ""
        self._play = ""
        self._detail_length = 300
        self._fallback: str | None = None
        self._refresh = True

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        keys = [str(k).strip().lower() for k in self.get_option("redact_keys") or [] if str(k).strip()]
        alternatives = "|".join(re.escape(k) for k in keys) or "(?!x)x"
        self._key_pattern = re.compile(f"({alternatives})", re.IGNORECASE)
        # key=value / "key": "value" / key: value with a secret-looking key, inside free text.
        self._text_pattern = re.compile(
            rf"""(\b[\w-]*(?:{alternatives})[\w-]*["']?\s*[:=]\s*["']?)([^\s"',;}}]+)""", re.IGNORECASE)
        self._detail_length = int(self.get_option("detail_length"))
        self._fallback = self.get_option("fallback_dir")
        self._refresh = bool(self.get_option("refresh_reports"))

    # ------------------------------------------------------------ redaction

    def _secret_key(self, key: Any) -> bool:
        return bool(self._key_pattern and isinstance(key, str) and self._key_pattern.search(key))

    def _learn(self, data: Any, depth: int = 0) -> None:
        """Remember the values of secret-looking keys anywhere in ``data``."""
        if depth > 8:
            return
        if isinstance(data, dict):
            for key, value in data.items():
                if self._secret_key(key) and isinstance(value, (str, int)) and not isinstance(value, bool):
                    text = str(value)
                    if len(text) >= 4 and "{{" not in text and text not in (REDACTED, "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"):
                        self._secrets.add(text)
                else:
                    self._learn(value, depth + 1)
        elif isinstance(data, (list, tuple)):
            for item in data:
                self._learn(item, depth + 1)

    def redact(self, text: Any) -> str:
        out = "" if text is None else str(text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            out = out.replace(secret, REDACTED)
        # Tokens after an auth scheme first: "Authorization: Bearer x" must not leave x behind.
        out = re.sub(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}", r"\1 " + REDACTED, out)
        if self._text_pattern is not None:
            out = self._text_pattern.sub(lambda m: m.group(1) + REDACTED, out)
        return re.sub(r"://[^/\s:@]+:[^/\s@]+@", "://" + REDACTED + "@", out)

    def _scrub(self, data: Any, depth: int = 0) -> Any:
        if depth > 8:
            return "…"
        if isinstance(data, dict):
            return {k: REDACTED if self._secret_key(k) else self._scrub(v, depth + 1) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self._scrub(v, depth + 1) for v in data]
        return data

    # ------------------------------------------------------------ what was done

    @staticmethod
    def _join(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return "; ".join(str(v) for v in value)
        return str(value)

    @staticmethod
    def _item_status(item: dict[str, Any]) -> str:
        if item.get("skipped"):
            return "skipped"
        if item.get("failed"):
            return "failed"
        return "changed" if item.get("changed") else "ok"

    def _summary(self, action: str, result: dict[str, Any], status: str) -> str:
        result = self._scrub({k: v for k, v in result.items() if k != "invocation"})
        if status == "skipped":
            return f"skipped: {result.get('skip_reason') or 'condition false'}" + (
                f" ({result['false_condition']})" if result.get("false_condition") else "")
        if isinstance(result.get("results"), list) and result["results"]:
            # What each item did (a notification per channel, a rollback per host), not only how many changed.
            items = [r for r in result["results"] if isinstance(r, dict)]
            parts = [self._summary(action, item, self._item_status(item)) for item in items[:_MAX_ITEMS_DESCRIBED]]
            more = f"; and {len(items) - _MAX_ITEMS_DESCRIBED} more" if len(items) > _MAX_ITEMS_DESCRIBED else ""
            return f"{len(items)} item(s): " + "; ".join(parts) + more
        if action in INCIDENT_ACTIONS and result.get("id"):
            verb = "joined" if result.get("joined") else ("opened" if "joined" in result else "updated")
            return f"incident {result['id']} {verb}" + (f"; status {result['record'].get('status')}" if isinstance(result.get("record"), dict) else "")
        if action in ("sre.runbooks.notify", "notify") and result.get("notification"):
            sent = result["notification"]
            text = f"{sent.get('channel')} {sent.get('event')}: {sent.get('status')} after {sent.get('attempts')} attempt(s)"
            return text + (f" ({sent.get('error') or sent.get('detail')})" if sent.get("error") or sent.get("detail") else "")
        if status in ("failed", "unreachable") and result.get("msg"):
            return self._join(result["msg"])
        if action in ("ansible.builtin.set_fact", "set_fact") and isinstance(result.get("ansible_facts"), dict):
            return "set " + ", ".join(sorted(result["ansible_facts"]))
        if result.get("cmd") is not None:
            command = " ".join(map(str, result["cmd"])) if isinstance(result["cmd"], list) else str(result["cmd"])
            return f"ran {command} (rc {result.get('rc')})"
        for key in ("msg", "outcome", "summary", "status", "state"):
            if result.get(key) not in (None, "", [], {}):
                return self._join(result[key])
        if result.get("include"):
            return f"included {result['include']}"
        return "changed" if result.get("changed") else "no change"

    # ------------------------------------------------------------ recording

    def _record(self, task_result: Any, status: str) -> None:
        task = task_result.task
        result = dict(task_result.result or {})
        uuid = str(getattr(task, "_uuid", ""))
        started = self._started.get(uuid, time.time())
        action = str(getattr(task, "resolved_action", None) or task.action or "")
        no_log = bool(getattr(task, "no_log", False)) or bool(result.get("_ansible_no_log")) or "censored" in result
        if not no_log:
            self._learn(result.get("invocation"))
            self._learn(result)
        entry = {
            "kind": "task",
            "time": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(max(time.time() - started, 0.0), 3),
            "run": self._run,
            "playbook": self._playbook,
            "play": self.redact(self._play),
            "host": task_result.host.get_name(),
            "task": self.redact(task_result.task_name or task.get_name()),
            "action": action,
            "status": status,
            "changed": bool(result.get("changed")),
            "detail": "output hidden (no_log)" if no_log else self.redact(self._summary(action, result, status))[: self._detail_length],
        }
        delegated = (result.get("_ansible_delegated_vars") or {}).get("ansible_host")
        if delegated:
            entry["delegated_to"] = str(delegated)
        if action in INCIDENT_ACTIONS and result.get("path") and not no_log and status in ("ok", "changed"):
            self._directory = Path(str(result["path"]))
        self._pending.append(entry)
        self._flush()

    def _flush(self) -> None:
        if self._directory is None or not self._pending:
            return
        try:
            if self._directory.is_dir():
                append_task_log(self._directory, self._pending)
                self._pending = []
        except OSError as exc:
            self._display.warning(f"incident_timeline: cannot append to {self._directory}: {exc}")

    # ------------------------------------------------------------ hooks

    def v2_playbook_on_start(self, playbook):
        self._playbook = os.path.basename(str(getattr(playbook, "_file_name", "") or ""))

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()
        try:
            manager = play.get_variable_manager()
            self._learn(dict(manager.extra_vars))
            self._learn(manager.get_vars(play=play))
            inventory = getattr(manager, "_inventory", None)
            if inventory is not None:
                for host in inventory.get_hosts(play.hosts)[:_MAX_HOSTS_SCANNED]:
                    self._learn(manager.get_vars(play=play, host=host, include_hostvars=False))
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # Learning secrets from variables is a safety net; the key-based redaction still applies.
            self._display.vvv(f"incident_timeline: could not read the play's variables: {exc}")

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._started[str(task._uuid)] = time.time()

    def v2_playbook_on_handler_task_start(self, task):
        self._started[str(task._uuid)] = time.time()

    def v2_runner_on_ok(self, result):
        self._record(result, "changed" if result.result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed (ignored)" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        self._pending.append({
            "kind": "run", "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "run": self._run,
            "playbook": self._playbook, "host": "", "task": "run finished", "status": "done",
            "detail": "; ".join(f"{h}: {stats.summarize(h)}" for h in hosts)[:1000],
        })
        if self._directory is None and self._fallback:
            self._directory = Path(self._fallback)
            self._directory.mkdir(parents=True, exist_ok=True)
        self._flush()
        if self._refresh and self._directory is not None and (self._directory / "incident.json").is_file():
            try:
                refresh_reports(self._directory)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                # The run is over; a report that cannot be re-rendered must not turn it into a failure.
                self._display.warning(f"incident_timeline: cannot refresh the reports in {self._directory}: {exc}")
