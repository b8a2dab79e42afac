"""Unit tests for _systemd (service_status): parsing real `systemctl show` output captured in a booted lab host.

The fixtures under fixtures/systemctl_show_*.txt are `TZ=UTC systemctl show -p <PROPERTIES> -- UNIT` taken from
units of a lab host (lab/hosts.py) at about 2026-11-23 10:28:54 UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _systemd as sd
from ansible_collections.sre.runbooks.plugins.modules import service_status

from ..modules.utils import run_module

FIXTURES = Path(__file__).parent / "fixtures"
# Three minutes after the fixtures were captured.
NOW = datetime(2026, 11, 23, 10, 31, 54, tzinfo=timezone.utc).timestamp()


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def props_of(case: str) -> dict:
    blocks = sd.parse_show_output(fixture(f"systemctl_show_{case}.txt"))
    assert len(blocks) == 1
    return blocks[0]


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --------------------------------------------------------------------------- unit names


@pytest.mark.parametrize("given, expected", [
    ("heart-disease-api", "heart-disease-api.service"),
    ("residency-scheduler-celery-worker.service", "residency-scheduler-celery-worker.service"),
    ("ss-tmpl@a.service", "ss-tmpl@a.service"),
    ("getty@tty1", "getty@tty1.service"),
    ("-.mount", "-.mount"),
    ("srv-data\\x2dold.mount", "srv-data\\x2dold.mount"),
    ("nginx.socket", "nginx.socket"),
    ("apt-daily.timer", "apt-daily.timer"),
    ("multi-user.target", "multi-user.target"),
    ("postgresql@15-main.service", "postgresql@15-main.service"),
    ("foo.bar", "foo.bar.service"),
    ("  redis-server  ", "redis-server.service"),
])
def test_unit_names_follow_systemd_grammar(given, expected):
    assert sd.normalise_unit_name(given) == expected


@pytest.mark.parametrize("given, message", [
    ("", "non-empty"),
    ("foo bar", "not a valid systemd unit name"),
    ("x; rm -rf /", "not a valid systemd unit name"),
    ("$(id).service", "not a valid systemd unit name"),
    ("../../etc/passwd", "not a valid systemd unit name"),
    ("a/b.service", "not a valid systemd unit name"),
    ("@foo.service", "not a valid systemd unit name"),
    ("héllo.service", "not a valid systemd unit name"),
    ("residency-scheduler-*", "glob pattern"),
    ("ss-tmpl@.service", "is a template"),
    ("x" * 250 + ".service", "longer than 255"),
    (42, "non-empty string"),
])
def test_bad_unit_names_are_rejected_naming_the_option(given, message):
    with pytest.raises(sd.InvalidInput, match=re.escape(message)) as info:
        sd.normalise_unit_name(given)
    assert str(info.value).startswith("units: ")


def test_units_are_deduplicated_in_order():
    assert sd.normalise_units(["b", "a.service", "b.service", "a"]) == ["b.service", "a.service"]
    assert sd.normalise_units("a") == ["a.service"]
    with pytest.raises(sd.InvalidInput, match="at least one"):
        sd.normalise_units([])


# --------------------------------------------------------------------------- parsing


def test_show_output_of_several_units_splits_on_blank_lines_in_argument_order():
    blocks = sd.parse_show_output(fixture("systemctl_show_multi.txt"))
    # sshd.service is an alias: systemd answers with the real unit's Id, so blocks are mapped by position.
    assert [b["Id"] for b in blocks] == ["ss-healthy.service", "ss-fails.service", "heart-disease-api.service",
                                         "ssh.service", "-.mount"]
    assert [b["LoadState"] for b in blocks] == ["loaded", "loaded", "not-found", "loaded", "loaded"]
    assert blocks[1]["ActiveState"] == "failed"
    # Values may contain '=' (LoadError does not, ExecStart would): only the first one splits.
    assert sd.parse_show_output("A=b=c\n")[0] == {"A": "b=c"}


@pytest.mark.parametrize("text, expected", [
    ("Mon 2026-11-23 10:25:30 UTC", "2026-11-23T10:25:30+00:00"),
    ("Mon 2026-11-23 10:25:30.123456 UTC", "2026-11-23T10:25:30.123456+00:00"),
    ("Mon 2026-11-23 11:25:30 +0100", "2026-11-23T11:25:30+01:00"),
    ("2026-11-23 10:25:30", "2026-11-23T10:25:30+00:00"),
    ("", None),
    ("n/a", None),
    ("Mon 2026-11-23 10:25:30 CET", None),
])
def test_timestamps(text, expected):
    parsed = sd.parse_timestamp(text)
    assert (parsed.isoformat() if parsed else None) == expected


@pytest.mark.parametrize("seconds, expected", [
    (0, "0s"), (45, "45s"), (180, "3 min"), (3599, "59 min"), (3600, "1h"), (7500, "2h 5min"),
    (86400, "1 day"), (3 * 86400 + 4 * 3600 + 5, "3 days 4h"), (-5, "0s"),
])
def test_format_age(seconds, expected):
    assert sd.format_age(seconds) == expected


# --------------------------------------------------------------------------- per-unit reports from real units


def test_active_service_is_healthy_with_uptime():
    report = sd.unit_report("ss-healthy.service", props_of("active"), NOW)
    assert report["healthy"] is True
    assert report["problems"] == []
    assert (report["load_state"], report["active_state"], report["sub_state"]) == ("loaded", "active", "running")
    assert report["unit_file_state"] == "enabled"
    assert report["main_pid"] == 105
    assert report["result"] == "success"
    assert report["n_restarts"] == 0
    assert report["active_enter_timestamp"] == "2026-11-23T10:25:20+00:00"
    assert report["since"] == "2026-11-23T10:25:20+00:00"
    assert report["uptime_seconds"] == pytest.approx(NOW - ts("2026-11-23T10:25:20+00:00"))
    assert report["fragment_path"] == "/etc/systemd/system/ss-healthy.service"
    assert report["description"] == "SS healthy"
    # The lab's containers do not delegate the memory controller: systemd prints [not set].
    assert report["memory_current"] is None and report["tasks_current"] is None and report["cpu_usage_nsec"] is None


def test_accounted_resources_are_numbers_and_unset_ones_null():
    props = props_of("active")
    props.update(MemoryCurrent="52428800", TasksCurrent="7", CPUUsageNSec="1250000000")
    report = sd.unit_report("x.service", props, NOW)
    assert (report["memory_current"], report["tasks_current"], report["cpu_usage_nsec"]) == (52428800, 7, 1250000000)
    props.update(MemoryCurrent="18446744073709551615")  # older systemd's "unset"
    assert sd.unit_report("x.service", props, NOW)["memory_current"] is None


def test_failed_service_names_result_exit_status_and_age():
    report = sd.unit_report("ss-fails.service", props_of("failed"), NOW)
    assert report["healthy"] is False
    assert (report["active_state"], report["sub_state"], report["result"]) == ("failed", "failed", "exit-code")
    assert (report["exec_main_code"], report["exec_main_status"]) == ("exited", 1)
    assert report["main_pid"] is None and report["exec_main_pid"] == 354
    assert report["uptime_seconds"] is None
    assert report["problems"] == ["failed (exit-code 1) 6 min ago"]


def test_killed_service_names_the_signal():
    props = props_of("failed")
    props.update(Result="signal", ExecMainCode="2", ExecMainStatus="9")
    assert sd.unit_report("x.service", props, NOW)["problems"][0].startswith("failed (signal SIGKILL)")
    props.update(Result="core-dump", ExecMainCode="3", ExecMainStatus="11")
    assert sd.unit_report("x.service", props, NOW)["exec_main_code"] == "dumped"
    assert sd.unit_report("x.service", props, NOW)["problems"][0].startswith("failed (core-dump SIGSEGV)")


def test_unit_waiting_to_restart_after_a_crash():
    report = sd.unit_report("ss-autorestart.service", props_of("auto_restart"), NOW)
    assert (report["active_state"], report["sub_state"]) == ("activating", "auto-restart")
    assert report["healthy"] is False
    assert report["uptime_seconds"] is None
    assert report["problems"] == ["crashed (exit-code 2) 3 min ago, waiting to restart", "restarted 1 time"]


def test_crash_loop_counts_restarts_and_max_restarts_tolerates_them():
    props = props_of("crashloop")
    report = sd.unit_report("ss-crashloop.service", props, NOW)
    assert report["n_restarts"] == 279
    assert "restarted 279 times" in report["problems"]
    assert report["healthy"] is False
    # Caught between two crashes a crash loop looks active/running: only the restart count gives it away.
    props.update(ActiveState="active", SubState="running", Result="success", MainPID="1240")
    assert sd.unit_report("ss-crashloop.service", props, NOW)["healthy"] is False
    assert sd.unit_report("ss-crashloop.service", props, NOW, max_restarts=500)["healthy"] is True


def test_disabled_never_started_unit_is_inactive():
    report = sd.unit_report("nginx.service", props_of("inactive"), NOW)
    assert (report["load_state"], report["active_state"], report["sub_state"]) == ("loaded", "inactive", "dead")
    assert report["unit_file_state"] == "disabled"
    assert report["healthy"] is False
    assert report["problems"] == ["inactive (never started)"]
    assert report["since"] is None and report["uptime_seconds"] is None


def test_missing_unit_is_reported_not_found():
    report = sd.unit_report("heart-disease-api.service", props_of("not_found"), NOW)
    assert report["load_state"] == "not-found"
    assert report["healthy"] is False
    assert report["problems"] == ["not found"]
    assert "not found" in report["load_error"]
    assert report["fragment_path"] is None and report["unit_file_state"] is None


def test_template_instance():
    report = sd.unit_report("ss-tmpl@a.service", props_of("template_instance"), NOW)
    assert report["id"] == "ss-tmpl@a.service"
    assert report["description"] == "SS template a"
    assert report["fragment_path"] == "/etc/systemd/system/ss-tmpl@.service"
    assert report["healthy"] is True and report["problems"] == []


def test_oneshot_with_remain_after_exit_is_healthy_without_it_is_not():
    props = props_of("oneshot")
    report = sd.unit_report("ss-oneshot.service", props, NOW)
    assert (report["type"], report["sub_state"], report["remain_after_exit"]) == ("oneshot", "exited", True)
    assert report["healthy"] is True
    props["RemainAfterExit"] = "no"
    report = sd.unit_report("ss-oneshot.service", props, NOW)
    assert report["healthy"] is False
    assert report["problems"] == ["active but exited (no main process)"]


def test_masked_and_daemon_reload_are_problems():
    props = props_of("active")
    props["NeedDaemonReload"] = "yes"
    report = sd.unit_report("x.service", props, NOW)
    assert report["need_daemon_reload"] is True
    assert report["problems"] == ["unit file changed on disk; systemctl daemon-reload needed"]
    props = props_of("not_found")
    props.update(LoadState="masked", UnitFileState="masked")
    assert sd.unit_report("x.service", props, NOW)["problems"] == ["masked"]


def test_non_service_units_only_need_to_be_active():
    blocks = sd.parse_show_output(fixture("systemctl_show_multi.txt"))
    report = sd.unit_report("-.mount", blocks[4], NOW)
    assert report["healthy"] is True
    assert report["n_restarts"] is None  # a service property only


# --------------------------------------------------------------------------- dependencies


def test_direct_dependencies_from_properties():
    props = props_of("dependent")
    assert sd.dependency_names(props) == {"ss-fails.service": ["requires", "after"]}
    with_implicit = sd.dependency_names(props, include_implicit=True)
    assert with_implicit["sysinit.target"] == ["requires", "after"]
    assert with_implicit["basic.target"] == ["after"]


def test_dependency_problems():
    failed = sd.parse_show_output(fixture("systemctl_show_dependency_failed.txt"))[0]
    entry = sd.dependency_report("ss-fails.service", ["requires", "after"], failed)
    assert entry["active_state"] == "failed"
    assert entry["problem"] == "dependency ss-fails.service failed (exit-code)"
    missing = {"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead"}
    assert sd.dependency_report("db.service", ["requires"], missing)["problem"] == "required dependency db.service is not-found"
    # A Wants=/After= dependency may legitimately be absent.
    assert sd.dependency_report("db.service", ["wants", "after"], missing)["problem"] is None


# --------------------------------------------------------------------------- commands, with a fake runner


class FakeHost:
    """Answers systemctl show / journalctl from the captured fixtures, recording every argv."""

    def __init__(self):
        self.units = {}
        for case in ("active", "failed", "auto_restart", "inactive", "not_found", "template_instance",
                     "oneshot", "crashloop", "dependent"):
            text = fixture(f"systemctl_show_{case}.txt")
            self.units[sd.parse_show_output(text)[0]["Id"]] = text
        self.units["ss-fails.service#dep"] = fixture("systemctl_show_dependency_failed.txt")
        self.calls = []
        self.journal = fixture("journalctl_failed.txt")
        self.show_rc = 0
        self.show_err = ""

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        assert all(isinstance(arg, str) for arg in argv)
        if argv[1] == "show":
            if self.show_rc:
                return self.show_rc, "", self.show_err
            names = argv[argv.index("--") + 1:]
            dependency_call = argv[argv.index("-p") + 1] == ",".join(sd.DEPENDENCY_PROPERTIES)
            blocks = []
            for name in names:
                key = f"{name}#dep" if dependency_call and f"{name}#dep" in self.units else name
                blocks.append(self.units.get(key) or f"Id={name}\nLoadState=not-found\nActiveState=inactive\nSubState=dead\n")
            return 0, "\n".join(blocks), ""
        if argv[0].endswith("journalctl"):
            unit = argv[argv.index("-u") + 1]
            lines = int(argv[argv.index("-n") + 1])
            text = self.journal if unit == "ss-fails.service" else "-- No entries --\n"
            return 0, "\n".join(text.splitlines()[-lines:]) + "\n", ""
        raise AssertionError(f"unexpected command {argv}")


def test_one_show_call_for_all_units_then_one_journal_call_each():
    host = FakeHost()
    result = sd.collect(["ss-healthy", "ss-fails.service", "heart-disease-api"], sd.Systemctl(host, "/bin/systemctl", "/bin/journalctl"),
                        now=NOW, journal_lines=5)
    shows = [call for call in host.calls if call[1] == "show"]
    assert len(shows) == 1
    assert shows[0][:5] == ["/bin/systemctl", "show", "--no-pager", "-p", ",".join(sd.PROPERTIES)]
    assert shows[0][5:] == ["--", "ss-healthy.service", "ss-fails.service", "heart-disease-api.service"]
    assert list(result["units"]) == ["ss-healthy.service", "ss-fails.service", "heart-disease-api.service"]
    assert result["healthy"] is False
    assert result["unhealthy"] == ["ss-fails.service", "heart-disease-api.service"]
    assert result["units"]["heart-disease-api.service"]["load_state"] == "not-found"
    assert result["units"]["ss-fails.service"]["journal"] == fixture("journalctl_failed.txt").splitlines()[-5:]
    assert result["units"]["ss-healthy.service"]["journal"] == []  # "-- No entries --" is not a line of the unit
    assert "ss-fails.service: failed (exit-code 1) 6 min ago" in result["summary"]
    assert result["summary"].startswith("3 units: 1 healthy, 2 unhealthy")
    assert result["commands"] == host.calls


def test_journal_options_reach_journalctl():
    host = FakeHost()
    sd.collect("ss-fails", sd.Systemctl(host, "systemctl", "journalctl"), now=NOW,
               journal_lines=3, journal_since="15m", journal_priority="error")
    journal = next(call for call in host.calls if call[0] == "journalctl")
    assert journal == ["journalctl", "--no-pager", "--quiet", "-o", "short-iso", "-n", "3",
                       "--since", "2026-11-23 10:16:54", "-p", "err", "-u", "ss-fails.service"]


def test_journal_lines_zero_skips_the_journal():
    host = FakeHost()
    result = sd.collect("ss-healthy", sd.Systemctl(host, "systemctl", "journalctl"), now=NOW, journal_lines=0)
    assert len(host.calls) == 1
    assert "journal" not in result["units"]["ss-healthy.service"]


def test_dependencies_use_one_more_show_call_and_surface_a_failed_dependency():
    host = FakeHost()
    result = sd.collect(["ss-dependent", "ss-healthy"], sd.Systemctl(host, "systemctl", "journalctl"), now=NOW,
                        journal_lines=0, include_dependencies=True)
    shows = [call for call in host.calls if call[1] == "show"]
    assert len(shows) == 2
    assert shows[1][-2:] == ["--", "ss-fails.service"]
    dependent = result["units"]["ss-dependent.service"]
    assert dependent["healthy"] is True  # the unit itself runs...
    assert dependent["dependencies_healthy"] is False  # ...but what it requires has failed
    assert dependent["dependencies"] == [{
        "unit": "ss-fails.service", "relations": ["requires", "after"], "description": "SS fails",
        "load_state": "loaded", "active_state": "failed", "sub_state": "failed", "result": "exit-code",
        "unit_file_state": "enabled", "problem": "dependency ss-fails.service failed (exit-code)",
    }]
    assert dependent["problems"] == ["dependency ss-fails.service failed (exit-code)"]
    assert result["units"]["ss-healthy.service"]["dependencies"] == []


def test_show_failures_are_reported():
    host = FakeHost()
    host.show_rc, host.show_err = 1, "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    with pytest.raises(sd.SystemdUnavailable, match="cannot reach the service manager"):
        sd.collect("x", sd.Systemctl(host, "systemctl", "journalctl"), now=NOW)
    host.show_err = "Access denied"
    with pytest.raises(sd.CommandFailed, match="exit code 1: Access denied"):
        sd.collect("x", sd.Systemctl(host, "systemctl", "journalctl"), now=NOW)
    # Fewer blocks than units: refuse to guess which is which.
    short = sd.Systemctl(lambda argv: (0, "Id=a.service\nLoadState=loaded\n", ""), "systemctl")
    with pytest.raises(sd.CommandFailed, match="1 unit blocks for 2 units"):
        sd.collect(["a", "b"], short, now=NOW)


def test_journal_failure_is_a_warning_not_an_error():
    def runner(argv):
        if argv[1] == "show":
            return 0, fixture("systemctl_show_active.txt"), ""
        return 1, "", "Failed to get journal access: Permission denied"
    result = sd.collect("ss-healthy", sd.Systemctl(runner, "systemctl", "journalctl"), now=NOW)
    unit = result["units"]["ss-healthy.service"]
    assert unit["journal"] == []
    assert unit["journal_warning"] == "journalctl failed with exit code 1: Failed to get journal access: Permission denied"
    assert unit["healthy"] is True
    no_journalctl = sd.collect("ss-healthy", sd.Systemctl(runner, "systemctl", None), now=NOW)
    assert no_journalctl["units"]["ss-healthy.service"]["journal_warning"] == "journalctl was not found on this host"


@pytest.mark.parametrize("kwargs, message", [
    ({"journal_lines": -1}, "journal_lines: expected 0 or more"),
    ({"max_restarts": -1}, "max_restarts: expected 0 or more"),
    ({"journal_since": "yesterday-ish"}, "journal_since: expected an age"),
    ({"journal_since": "2026-11-23T10:00:00"}, "journal_since: '2026-11-23T10:00:00' has no time zone"),
    ({"journal_priority": "loud"}, "journal_priority: expected one of emerg"),
])
def test_bad_options_are_rejected_before_running_anything(kwargs, message):
    host = FakeHost()
    with pytest.raises(sd.InvalidInput, match=re.escape(message)):
        sd.collect("ss-healthy", sd.Systemctl(host, "systemctl", "journalctl"), now=NOW, **kwargs)
    assert host.calls == []


@pytest.mark.parametrize("given, expected", [("err", "err"), ("ERROR", "err"), ("3", "err"), ("warn", "warning"),
                                             ("0", "emerg"), (None, None)])
def test_priorities(given, expected):
    assert sd.normalise_priority(given) == expected


def test_since_accepts_ages_and_iso_times():
    assert sd.parse_since("1h", NOW).isoformat() == "2026-11-23T09:31:54+00:00"
    assert sd.parse_since("2026-11-23T11:00:00+01:00", NOW).isoformat() == "2026-11-23T10:00:00+00:00"
    assert sd.parse_since(None, NOW) is None


# --------------------------------------------------------------------------- host checks


def test_host_without_systemctl_fails_clearly(tmp_path):
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "comm").write_text("bash\n", encoding="utf-8")
    with pytest.raises(sd.SystemdUnavailable, match=r"systemctl was not found on this host.*does not run systemd \(PID 1 is 'bash'\)"):
        sd.check_systemd_host(None, run_root=str(tmp_path / "run"), proc_root=str(tmp_path / "proc"))
    with pytest.raises(sd.SystemdUnavailable, match="not booted with systemd"):
        sd.check_systemd_host("/usr/bin/systemctl", run_root=str(tmp_path / "run"), proc_root=str(tmp_path / "proc"))
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    sd.check_systemd_host("/usr/bin/systemctl", run_root=str(tmp_path / "run"), proc_root=str(tmp_path / "proc"))


def test_find_binary_searches_the_given_path(tmp_path):
    tool = tmp_path / "systemctl"
    tool.write_text("#!/bin/sh\n", encoding="utf-8")
    tool.chmod(0o755)
    assert sd.find_binary("systemctl", search_path=str(tmp_path)) == str(tool)
    assert sd.find_binary("systemctl", search_path=str(tmp_path / "none")) is None


# --------------------------------------------------------------------------- the module


def _patch_module_host(monkeypatch, host, systemctl="/usr/bin/systemctl"):
    from ansible.module_utils import basic

    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: systemctl if name == "systemctl" else "/usr/bin/journalctl")
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, argv, **kwargs: host(argv))
    if systemctl:
        # This test machine does not run systemd; pretend it does (the check itself is tested above).
        monkeypatch.setattr(service_status, "check_systemd_host", lambda path: None)


def test_module_reports_units_unchanged_in_check_mode(monkeypatch):
    host = FakeHost()
    _patch_module_host(monkeypatch, host)
    result, failed = run_module(monkeypatch, service_status.main,
                                {"units": ["ss-healthy", "heart-disease-api"], "_ansible_check_mode": True})
    assert failed is False
    assert result["changed"] is False
    assert result["units"]["ss-healthy.service"]["healthy"] is True
    assert result["units"]["heart-disease-api.service"]["problems"] == ["not found"]
    assert len([call for call in host.calls if call[1] == "show"]) == 1


def test_module_fails_on_a_bad_unit_name_without_running_anything(monkeypatch):
    host = FakeHost()
    _patch_module_host(monkeypatch, host)
    result, failed = run_module(monkeypatch, service_status.main, {"units": ["api; reboot"]})
    assert failed is True
    assert result["msg"].startswith("Invalid option: units: 'api; reboot' is not a valid systemd unit name")
    assert host.calls == []


def test_module_fails_clearly_without_systemd(monkeypatch):
    host = FakeHost()
    _patch_module_host(monkeypatch, host, systemctl=None)
    result, failed = run_module(monkeypatch, service_status.main, {"units": ["api"]})
    assert failed is True
    assert "systemctl was not found on this host" in result["msg"]
    assert "does not run systemd" in result["msg"]


def test_journal_of_an_alias_is_read_by_the_real_unit_name():
    ssh_block = fixture("systemctl_show_multi.txt").split("\n\n")[3]
    calls = []

    def runner(argv):
        calls.append(list(argv))
        return (0, ssh_block, "") if argv[1] == "show" else (0, "", "")
    result = sd.collect("sshd", sd.Systemctl(runner, "systemctl", "journalctl"), now=NOW)
    assert result["units"]["sshd.service"]["id"] == "ssh.service"
    assert calls[1][-2:] == ["-u", "ssh.service"]
