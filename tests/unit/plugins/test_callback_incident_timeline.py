"""The incident_timeline callback: where it writes, what it records, what it never records."""

from __future__ import annotations

import json
from types import SimpleNamespace

import yaml
from ansible import constants as C

from ansible_collections.sre.runbooks.plugins.callback import incident_timeline
from ansible_collections.sre.runbooks.plugins.callback.incident_timeline import CallbackModule
from ansible_collections.sre.runbooks.plugins.module_utils import _incident as inc


class FakeTask:
    def __init__(self, name, action, no_log=False):
        self.name, self.action, self.resolved_action, self.no_log, self._uuid = name, action, action, no_log, name

    def get_name(self):
        return self.name


def result(task, data, host="localhost"):
    return SimpleNamespace(task=task, result=data, host=SimpleNamespace(get_name=lambda: host), task_name=task.name)


def make_callback():
    # What the plugin loader does: register the documented options, so defaults apply as in a real run.
    options = yaml.safe_load(incident_timeline.DOCUMENTATION)["options"]
    C.config.initialize_plugin_configuration_definitions("callback", "sre.runbooks.incident_timeline", options)
    callback = CallbackModule()
    callback._load_name = "sre.runbooks.incident_timeline"  # pylint: disable=protected-access
    callback.set_options()
    return callback


def run_task(callback, task, data, hook="v2_runner_on_ok", **kwargs):
    callback.v2_playbook_on_task_start(task, False)
    getattr(callback, hook)(result(task, data), **kwargs)


def test_tasks_before_the_incident_are_buffered_then_written(tmp_path):
    directory, _record, _joined, _changed = inc.open_or_join(tmp_path, "A", "k", "critical", {}, "", "A", "r", False, False)
    callback = make_callback()
    run_task(callback, FakeTask("Probe", "ansible.builtin.command"), {"cmd": ["curl", "-s", "x"], "rc": 0, "changed": True})
    assert not (directory / inc.TASK_LOG).exists()
    run_task(callback, FakeTask("Open", "sre.runbooks.incident"), {"path": str(directory), "id": directory.name, "joined": False})
    run_task(callback, FakeTask("Skip me", "ansible.builtin.debug"), {"skipped": True, "false_condition": "x > 1"}, "v2_runner_on_skipped")
    run_task(callback, FakeTask("Break", "ansible.builtin.fail"), {"msg": "boom"}, "v2_runner_on_failed", ignore_errors=True)
    entries = inc.read_task_log(directory)
    assert [e["task"] for e in entries] == ["Probe", "Open", "Skip me", "Break"]
    assert [e["status"] for e in entries] == ["changed", "ok", "skipped", "failed (ignored)"]
    assert entries[0]["detail"] == "ran curl -s x (rc 0)" and entries[1]["detail"] == f"incident {directory.name} opened"
    assert "x > 1" in entries[2]["detail"] and entries[3]["detail"] == "boom"
    callback.v2_playbook_on_stats(SimpleNamespace(processed={"localhost": 1}, summarize=lambda h: {"ok": 4}))
    assert "## Task log" in (directory / "report.md").read_text()
    assert "Probe" in (directory / "report.html").read_text()


def test_secrets_are_redacted_and_no_log_hidden(tmp_path):
    directory, _record, _joined, _changed = inc.open_or_join(tmp_path, "A", "k", "critical", {}, "", "A", "r", False, False)
    callback = make_callback()
    run_task(callback, FakeTask("Open", "sre.runbooks.incident"), {"path": str(directory), "id": "x"})
    # A value learnt from a secret-looking key is redacted wherever it shows up later.
    run_task(callback, FakeTask("Fetch", "ansible.builtin.uri"), {"json": {"api_key": "AKIA-very-secret"}, "msg": "OK"})
    run_task(callback, FakeTask("Echo", "ansible.builtin.debug"), {"msg": "the key is AKIA-very-secret"})
    run_task(callback, FakeTask("Inline", "ansible.builtin.debug"),
             {"msg": "connect password=hunter2x token: tok-abc Authorization: Bearer abcdef123456 https://u:pw123@db.example.org/x"})
    run_task(callback, FakeTask("Hidden", "ansible.builtin.set_fact", no_log=True), {"ansible_facts": {"x": "s3cr3t-value"}})
    text = (directory / inc.TASK_LOG).read_text()
    for secret in ("AKIA-very-secret", "hunter2x", "tok-abc", "abcdef123456", "pw123", "s3cr3t-value"):
        assert secret not in text, secret
    entries = {e["task"]: e for e in map(json.loads, text.splitlines())}
    assert entries["Echo"]["detail"] == "the key is ********"
    assert entries["Hidden"]["detail"] == "output hidden (no_log)"


def test_secrets_learnt_from_play_variables(tmp_path):
    callback = make_callback()
    manager = SimpleNamespace(extra_vars={"incident_notify_smtp_password": "pl4y-secret"}, get_vars=lambda **kw: {},
                              _inventory=None)
    callback.v2_playbook_on_play_start(SimpleNamespace(get_name=lambda: "p", get_variable_manager=lambda: manager, hosts="all"))
    assert callback.redact("login with pl4y-secret") == "login with ********"
