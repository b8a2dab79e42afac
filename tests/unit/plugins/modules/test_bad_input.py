"""Bad input, for every module: a clear error that names what was wrong, and nothing touched.

Two tables. The first is derived from each module's own argument spec, so a module added later is
covered too: an unknown option, each required option left out, and a value of the wrong type for each
typed option. The second holds what only the module can judge (durations, regular expressions,
identifiers, injection strings, huge values, unreadable files), each with the option its message must
name. Every case runs with its paths in a fresh directory and the services on a closed port, and
checks that the directory is unchanged afterwards: a refused input writes, connects and runs nothing.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import socket
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.sre.runbooks.plugins import modules as modules_package

from .utils import run_module


class _SpecSeen(Exception):
    """Raised by a patched AnsibleModule to read a module's argument spec without running it."""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is: nothing answers there


CLOSED = _closed_port()
PG = {"host": "127.0.0.1", "port": CLOSED, "connect_timeout": 1}
REDIS = {"host": "127.0.0.1", "port": CLOSED, "timeout": 1}
URL = f"http://127.0.0.1:{CLOSED}"
MODULES = sorted(name for _finder, name, _pkg in pkgutil.iter_modules(modules_package.__path__) if not name.startswith("_"))


def base_args(name: str, work: Path) -> dict[str, Any]:
    """The least a module needs to get past its argument spec, pointing at nothing that answers."""
    (work / "releases").mkdir(exist_ok=True)
    (work / "app.log").write_text('{"text": "x", "record": {"level": {"name": "ERROR"}, "message": "x"}}\n')
    (work / "secret.env").write_text("JWT_SECRET=old-secret-value-0123456789\n")
    return {
        "acgme_compliance": {"source": "shifts", "shifts": [], "people": []},
        "acgme_coverage": {"source": "shifts", "shifts": [], "people": []},
        "app_account": {**PG, "accounts": ["resident01"], "lock": True},
        "cache_stats": dict(REDIS),
        "host_resources": {"interval": 0.1},
        "http_probe": {"url": f"{URL}/health"},
        "incident": {"state": "open", "incident_dir": str(work / "incidents"), "alert_name": "HighErrorRate"},
        "ip_blocklist": {"addresses": ["198.51.100.7"], "netns": "sre-runbooks-no-such-netns"},
        "log_query": {"path": [str(work / "app.log")]},
        "model_check": {"home": str(work)},
        "notify": {"channel": "slack", "text": "x", "slack_webhook_url": f"{URL}/hook", "retries": 0, "timeout": 1},
        "pg_activity": dict(PG),
        "pg_slow_queries": dict(PG),
        "pg_terminate": {**PG, "state": ["idle in transaction"]},
        "prometheus_query": {"url": URL, "query": "up", "timeout": 1},
        "prometheus_watch": {"url": URL, "query": "up", "threshold": 1, "timeout": 1, "recover_within": "1s"},
        "redis_config": {**REDIS, "settings": {"maxmemory": "64mb"}},
        "release": {"path": str(work / "releases"), "action": "list"},
        "remediation_lock": {"name": "release:scheduler", "owner": "run-1", "path": str(work / "locks"), "state": "released"},
        "rotate_credentials": {"kind": "jwt_secret", "secret_file": str(work / "secret.env"), "key": "JWT_SECRET"},
        "scale_service": {"template": "residency-scheduler-backend", "instances": ["3"], "health_url": f"{URL}/health",
                          "lb_type": "none"},
        "schedule_change": {**PG, "changes": [{"action": "remove", "assignment_id": 1}], "reason": "test"},
        "service_status": {"units": ["residency-scheduler-backend.service"]},
    }[name]


def argument_spec(monkeypatch, name: str) -> tuple[dict, dict]:
    def grab(self, argument_spec=None, **kwargs):  # pylint: disable=unused-argument
        raise _SpecSeen(argument_spec, kwargs)

    module = importlib.import_module(f"ansible_collections.sre.runbooks.plugins.modules.{name}")
    with monkeypatch.context() as patched:
        patched.setattr(basic.AnsibleModule, "__init__", grab)
        with patch_module_args({}):
            try:
                module.main()
            except _SpecSeen as seen:
                return seen.args[0], seen.args[1]
    raise AssertionError(f"{name}: main() did not build an AnsibleModule")


def snapshot(work: Path) -> dict[str, tuple[str, bytes | str]]:
    state = {}
    for path in sorted(work.rglob("*")):
        rel = str(path.relative_to(work))
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_file():
            state[rel] = ("file", path.read_bytes())
        else:
            state[rel] = ("dir", "")
    return state


def refuse(monkeypatch, name: str, args: dict, work: Path) -> str:
    """Run module NAME with ARGS; it must fail and leave WORK as it was. Returns the message."""
    before = snapshot(work)
    module = importlib.import_module(f"ansible_collections.sre.runbooks.plugins.modules.{name}")
    monkeypatch.chdir(work)
    result, failed = run_module(monkeypatch, module.main, args)
    assert failed, f"{name} accepted {args!r}: {result}"
    assert snapshot(work) == before, f"{name} changed {work} although it refused {args!r}"
    assert "Traceback" not in result["msg"]
    return result["msg"]


WRONG_VALUE = {"int": "eleven", "float": "a lot", "bool": "perhaps", "dict": "not a mapping", "list": {"a": {"b": 1}}}


def spec_cases() -> list[tuple[str, str, str]]:
    return [(name, kind, "") for name in MODULES for kind in ("unknown", "required", "types")]


@pytest.mark.parametrize(("name", "kind", "_unused"), spec_cases(), ids=lambda v: v or None)
def test_argument_spec_is_strict(monkeypatch, tmp_path, name, kind, _unused):
    spec, _kwargs = argument_spec(monkeypatch, name)
    args = base_args(name, tmp_path)
    if kind == "unknown":
        message = refuse(monkeypatch, name, {**args, "bogus_option": 1}, tmp_path)
        assert "bogus_option" in message
    elif kind == "required":
        for option in (o for o, s in spec.items() if s.get("required")):
            reduced = {k: v for k, v in args.items() if k != option}
            assert option in refuse(monkeypatch, name, reduced, tmp_path)
    else:
        typed = [(o, s["type"]) for o, s in spec.items() if s.get("type") in WRONG_VALUE]
        for option, option_type in typed:
            message = refuse(monkeypatch, name, {**args, option: WRONG_VALUE[option_type]}, tmp_path)
            if "options" in spec[option]:
                # ansible-core's own check of a dict with sub-options does not name it; it still refuses
                assert "dictionary requested" in message, (option, message)
            else:
                assert option in message, (option, message)


def test_every_module_has_base_args(tmp_path):
    for name in MODULES:
        assert base_args(name, tmp_path) is not None


# (module, overrides of the base args, the option the message must name, a fragment it must contain)
SEMANTIC = [
    ("log_query", {"path": ["/nonexistent/app.log"]}, "path", "does not exist"),
    ("log_query", {"regex": "([a-"}, "regex", "invalid regular expression"),
    ("log_query", {"since": "yesterday-ish"}, "since", "duration"),
    ("log_query", {"since": "-5m"}, "since", ""),
    ("log_query", {"top": -1}, "top", ""),
    ("log_query", {"workers": 10 ** 6}, "workers", "at most"),
    ("prometheus_query", {"url": "ftp://127.0.0.1/"}, "url", "http"),
    ("prometheus_query", {"url": "http://127.0.0.1:1\r\nHost: evil"}, "url", ""),
    ("prometheus_query", {"kind": "range", "start": "30d", "step": "1s"}, "step", "points"),
    ("prometheus_query", {"kind": "range", "start": "1h", "step": "-1m"}, "step", ""),
    ("prometheus_watch", {"recover_within": "forever"}, "recover_within", ""),
    ("pg_activity", {"long_running_threshold": "5 parsecs"}, "long_running_threshold", ""),
    ("pg_activity", {"limit": -3}, "limit", ""),
    ("pg_terminate", {"min_duration": "'; DROP TABLE people; --"}, "min_duration", ""),
    ("pg_terminate", {"max_targets": -1}, "max_targets", ""),
    ("pg_terminate", {"state": None}, "match_all", "no filter"),
    ("pg_slow_queries", {"explain": "DROP TABLE people"}, "explain", "SELECT"),
    ("pg_slow_queries", {"explain": "SELECT 1; DELETE FROM people"}, "explain", "single statement"),
    ("pg_slow_queries", {"explain": "WITH x AS (DELETE FROM people RETURNING *) SELECT * FROM x"}, "explain", "DELETE"),
    ("pg_slow_queries", {"top": 0}, "top", ""),
    ("acgme_compliance", {"shifts": [{"person": "a"}]}, "shifts[0]", "unknown field"),
    ("acgme_compliance", {"as_of": "2026-13-45"}, "as_of", "ISO 8601"),
    ("acgme_compliance", {"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
    ("acgme_compliance", {"rules": ["no_such_rule"]}, "rules", "no_such_rule"),
    ("acgme_coverage", {"shifts": [{"person_id": "x", "start": "nope"}]}, "shifts[0]", ""),
    ("schedule_change", {"changes": [{"op": "explode"}]}, "changes[0]", "unknown field"),
    ("schedule_change", {"changes": [{"action": "remove", "assignment_id": "1; DROP TABLE assignments"}]}, "assignment_id", "integer"),
    ("schedule_change", {"reason": ""}, "reason", ""),
    ("app_account", {"accounts": []}, "accounts", ""),
    ("app_account", {"max_accounts": 0}, "max_accounts", ""),
    ("app_account", {"columns": {"bogus": "x"}}, "columns", "unknown"),
    ("app_account", {"lock": None}, "lock", "nothing to do"),
    ("redis_config", {"settings": {}}, "settings", ""),
    ("host_resources", {"interval": -2}, "interval", ""),
    ("host_resources", {"ports": [70000]}, "ports", "TCP port"),
    ("host_resources", {"top": 10 ** 9}, "top", ""),
    ("http_probe", {"url": "not a url"}, "url", "http"),
    ("http_probe", {"count": 0}, "count", ""),
    ("http_probe", {"concurrency": 100000}, "concurrency", ""),
    ("http_probe", {"headers": {"X-Probe": "a\r\nInjected: yes"}}, "headers", "line break"),
    ("http_probe", {"body_regex": "(["}, "body_regex", "regular expression"),
    ("incident", {"severity": "apocalyptic"}, "severity", "expected one of"),
    ("incident", {"state": "present", "path": "/nonexistent/incident"}, "path", "no incident record"),
    ("ip_blocklist", {"addresses": ["not-an-ip"]}, "addresses", "not an IP"),
    ("ip_blocklist", {"addresses": ["0.0.0.0/0"]}, "addresses", "protected"),
    ("ip_blocklist", {"timeout": "soon"}, "timeout", ""),
    ("ip_blocklist", {"table": "t; flush ruleset"}, "table", ""),
    ("notify", {"channel": "carrier-pigeon"}, "channel", ""),
    ("model_check", {"home": "/nonexistent/heart-disease"}, "home", "does not exist"),
    ("model_check", {"since_minutes": -5}, "since_minutes", ""),
    ("model_check", {"psi_bands": [0.5, 0.1]}, "psi_bands", "increasing"),
    ("model_check", {"floor": {"accuracy": 2}}, "floor", "at most 1"),
    ("model_check", {"floor": {"precision": 0.5}}, "floor", "unknown metric"),
    ("model_check", {"data_window": 0}, "data_window", ""),
    ("release", {"path": "/nonexistent/releases"}, "path", "does not exist"),
    ("release", {"action": "switch", "version": "../../etc"}, "version", ""),
    ("release", {"action": "restore", "archive": "/etc/hostname", "backup_dir": "releases"}, "archive", "tar"),
    ("remediation_lock", {"name": "../../etc/passwd"}, "name", "not a lock name"),
    ("remediation_lock", {"owner": "run\n; reboot"}, "owner", "printable"),
    ("remediation_lock", {"wait": -5}, "wait", "between"),
    ("remediation_lock", {"since": "yesterday", "state": "acquired"}, "since", "ISO 8601"),
    ("rotate_credentials", {"length": 3}, "length", ""),
    ("rotate_credentials", {"mode": "0999"}, "mode", "octal"),
    ("rotate_credentials", {"secret_file": "/nonexistent/dir/secret.env"}, "secret_file", "does not exist"),
    ("scale_service", {"instances": ["1; rm -rf /"]}, "instances", ""),
    ("scale_service", {"template": "x@.service; reboot"}, "template", ""),
    ("service_status", {"units": []}, "units", ""),
    ("service_status", {"units": ["foo; reboot"]}, "units", "not a valid systemd unit name"),
    ("service_status", {"journal_since": "whenever"}, "journal_since", ""),
    # shell metacharacters in what reaches a command line: refused by name, never run through a shell
    ("service_status", {"journal_since": "$(touch pwned)"}, "journal_since", ""),
    ("service_status", {"journal_priority": "3; touch pwned"}, "journal_priority", "expected one of"),
    ("ip_blocklist", {"netns": "ns; touch pwned"}, "netns", "network namespace name"),
    ("ip_blocklist", {"set_v4": "s; touch pwned"}, "set_v4", "letters, digits"),
    ("ip_blocklist", {"chain": "c`touch pwned`"}, "chain", "letters, digits"),
    ("rotate_credentials", {"key": "JWT_SECRET; touch pwned"}, "key", "not found"),
    ("rotate_credentials", {"owner": "root; touch pwned"}, "owner", "no such owner"),
    ("model_check", {"archive_pattern": "../../*"}, "archive_pattern", "{version}"),
    ("scale_service", {"instances": ["$(touch pwned)"]}, "instances", ""),
    # huge values
    ("prometheus_query", {"kind": "range", "start": "100000000w", "step": "1s"}, "st", ""),
    ("acgme_compliance", {"shifts": [{"person_id": "x", "start": "9" * 5000, "end": "1", "kind": "work"}]}, "shifts[0]", ""),
]


@pytest.mark.parametrize(("name", "overrides", "option", "fragment"), SEMANTIC,
                         ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(SEMANTIC)])
def test_module_refuses_what_it_cannot_use(monkeypatch, tmp_path, name, overrides, option, fragment):
    args = {k: v for k, v in {**base_args(name, tmp_path), **overrides}.items() if v is not None}
    message = refuse(monkeypatch, name, args, tmp_path)
    assert option in message and fragment in message, message
    # the refusal is about the input, never about the service that was not even asked
    assert "cannot reach" not in message and "cannot connect" not in message and "Connection refused" not in message


def test_semantic_table_covers_every_module():
    assert {case[0] for case in SEMANTIC} >= set(MODULES) - {"cache_stats"}, "a module without a bad-input case"


@pytest.mark.parametrize("injection", ["'; DROP TABLE people; --", "$(touch pwned)", "`touch pwned`", "a\" or \"1\"=\"1",
                                       "../../etc/passwd", "{{ lookup('pipe', 'touch pwned') }}"])
def test_log_filters_treat_injection_as_text(monkeypatch, tmp_path, injection):
    log = tmp_path / "app.log"
    log.write_text(f"2026-11-23 10:00:00 | ERROR | app:run:1 - login failed for {injection}\n"
                   "2026-11-23 10:00:01 | ERROR | app:run:1 - login failed for someone else\n")
    from ansible_collections.sre.runbooks.plugins.modules import log_query  # pylint: disable=import-outside-toplevel
    monkeypatch.chdir(tmp_path)
    result, failed = run_module(monkeypatch, log_query.main, {"path": [str(log)], "search": injection, "now": "2026-11-23T11:00:00Z"})
    assert not failed, result
    assert result["matched"] == 1
    assert not (tmp_path / "pwned").exists()


def test_unreadable_file_is_named(monkeypatch, tmp_path):
    if os.geteuid() == 0:
        # root reads everything: a directory where a file is expected is the unreadable case here
        target = tmp_path / "dir.log"
        target.mkdir()
    else:
        target = tmp_path / "locked.log"
        target.write_text("x\n")
        target.chmod(0)
    message = refuse(monkeypatch, "log_query", {"path": [str(target)]}, tmp_path)
    assert str(target) in message


# Free text that is only ever data (a filter value, a message): accepted and used literally, with no side effect.
# (module, overrides, check of the result) — SQL filters are proven against a real PostgreSQL in
# tests/integration/test_injection_filters.py.
LITERAL = [
    ("log_query", {"fields": {"ip": "'; DROP TABLE users; --"}}, lambda r: r["matched"] == 0),
    ("log_query", {"mode": "auth", "auth_event": "$(touch pwned)"}, lambda r: r["matched"] == 0),
    ("log_query", {"group_by": "`touch pwned`"}, lambda r: r["matched"] == 1 and r["groups"][0]["key"] == "(missing)"),
    ("log_query", {"search": "x" * 1_000_000}, lambda r: r["matched"] == 0),
    ("log_query", {"regex": r"\$\(touch pwned\)"}, lambda r: r["matched"] == 0),
    ("log_query", {"max_message_length": 10 ** 12, "limit": 10 ** 6, "top": 10 ** 30}, lambda r: r["matched"] == 1),
    ("http_probe", {"body_contains": "$(touch pwned)"}, lambda r: True),
    ("notify", {"text": "$(touch pwned) {{ lookup('pipe', 'touch pwned') }}", "slack_channel": "#x; touch pwned"}, lambda r: True),
]


@pytest.mark.parametrize(("name", "overrides", "check"), LITERAL, ids=[f"{c[0]}-{'-'.join(c[1])}" for c in LITERAL])
def test_free_text_is_data_not_code(monkeypatch, tmp_path, name, overrides, check):
    args = {**base_args(name, tmp_path), **overrides}
    before = snapshot(tmp_path)
    module = importlib.import_module(f"ansible_collections.sre.runbooks.plugins.modules.{name}")
    monkeypatch.chdir(tmp_path)
    result, failed = run_module(monkeypatch, module.main, args)
    assert "Traceback" not in str(result.get("msg", ""))
    if failed:  # only the closed port may refuse: the text itself was accepted
        assert "127.0.0.1" in result["msg"] or "connect" in result["msg"] or "reach" in result["msg"], result["msg"]
    else:
        assert check(result), result
    assert not (tmp_path / "pwned").exists() and snapshot(tmp_path) == before
