# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""service_status: state, restarts, uptime, journal and dependencies of systemd units.

Reads everything from ``systemctl show`` (one call for all the units asked
about, one more for their dependencies) and ``journalctl -u`` (one call per
unit), always as argv lists, never through a shell. Timestamps are read with
``TZ=UTC`` so they parse the same on every host.

Entry point: ``collect(units, ...) -> dict``. Bad input raises ``InvalidInput``
naming the option; a host without systemd raises ``SystemdUnavailable``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional, Sequence

# A runner takes an argv list and returns (rc, stdout, stderr).
Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]

# Locale, time zone and pager settings that make systemctl/journalctl output parseable.
COMMAND_ENV = {"LC_ALL": "C", "LANG": "C", "TZ": "UTC", "SYSTEMD_PAGER": "", "PAGER": "cat", "SYSTEMD_COLORS": "0"}
BIN_SEARCH_PATH = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")

UNIT_TYPES = ("service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope")
UNIT_NAME_MAX = 255
# systemd's unit-name grammar (src/basic/unit-name.c): prefix[@instance].type
_PREFIX_CHARS = r"A-Za-z0-9:_.\\"
_UNIT_NAME_RE = re.compile(
    rf"^(?P<prefix>[{_PREFIX_CHARS}-]+)(?:(?P<at>@)(?P<instance>[{_PREFIX_CHARS}@-]*))?\.(?P<type>{'|'.join(UNIT_TYPES)})$"
)
_SUFFIX_RE = re.compile(rf"\.({'|'.join(UNIT_TYPES)})$")

PROPERTIES = (
    "Id", "Description", "LoadState", "LoadError", "ActiveState", "SubState", "UnitFileState",
    "Result", "Type", "RemainAfterExit", "Restart", "MainPID", "ExecMainPID", "ExecMainCode", "ExecMainStatus",
    "ExecMainStartTimestamp", "ExecMainExitTimestamp", "NRestarts", "StateChangeTimestamp",
    "ActiveEnterTimestamp", "ActiveExitTimestamp", "InactiveEnterTimestamp",
    "MemoryCurrent", "TasksCurrent", "CPUUsageNSec", "FragmentPath", "DropInPaths", "NeedDaemonReload",
    "Requires", "Requisite", "BindsTo", "Upholds", "Wants", "After",
)
DEPENDENCY_PROPERTIES = ("Id", "Description", "LoadState", "ActiveState", "SubState", "Result", "UnitFileState")
# Property -> relation name reported, in the order relations are listed.
RELATIONS = (
    ("Requires", "requires"), ("Requisite", "requisite"), ("BindsTo", "binds_to"),
    ("Upholds", "upholds"), ("Wants", "wants"), ("After", "after"),
)
# Relations whose dependency must be up for the unit to be.
HARD_RELATIONS = frozenset(("requires", "requisite", "binds_to"))
# Added to every service by DefaultDependencies=yes: hidden unless asked for, they only add noise.
IMPLICIT_DEPENDENCIES = frozenset((
    "sysinit.target", "basic.target", "shutdown.target", "system.slice", "-.slice", "-.mount",
    "systemd-journald.socket", "systemd-journald.service", "systemd-journald-dev-log.socket",
))

JOURNAL_PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
JOURNAL_LINE_MAX = 2000
# si_code values of waitid(): what ExecMainCode holds.
_EXEC_MAIN_CODES = {1: "exited", 2: "killed", 3: "dumped", 4: "trapped", 5: "stopped", 6: "continued"}
# Service sub-states in which an active service is doing its job.
_RUNNING_SUB_STATES = frozenset(("running", "reload", "reload-signal", "reload-notify", "refresh-extensions"))
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")
_DURATION_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_TIMESTAMP_RE = re.compile(
    r"^(?:[A-Za-z]{3} )?(?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,6}))?"
    r"(?: (?P<zone>UTC|GMT|[+-]\d{2}:?\d{2}))?$"
)
# systemd prints "not set" for unset numbers; older releases print UINT64_MAX.
_UNSET = ("", "[not set]", "[no data]", "infinity", "18446744073709551615")


class SystemdError(Exception):
    """Base of the errors this module raises."""


class InvalidInput(SystemdError, ValueError):
    """An option has a value systemd would not accept."""


class SystemdUnavailable(SystemdError):
    """The host does not run systemd (no systemctl, or PID 1 is something else)."""


class CommandFailed(SystemdError):
    """systemctl or journalctl failed or printed something unexpected."""


# --------------------------------------------------------------------------- input


def normalise_unit_name(name: Any, option: str = "units") -> str:
    """Validate ``name`` against systemd's unit-name grammar; a name without a type gets ``.service`` (as systemctl does)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{option}: a unit name must be a non-empty string, got {name!r}")
    text = name.strip()
    if any(char in text for char in "*?[]"):
        raise InvalidInput(f"{option}: {text!r} is a glob pattern; give exact unit names (globs only match loaded units)")
    if not _SUFFIX_RE.search(text):
        text += ".service"
    if len(text) > UNIT_NAME_MAX:
        raise InvalidInput(f"{option}: unit name {text[:40]!r}... is longer than {UNIT_NAME_MAX} characters")
    match = _UNIT_NAME_RE.match(text)
    if not match:
        raise InvalidInput(
            f"{option}: {name!r} is not a valid systemd unit name: expected NAME[@INSTANCE].TYPE with NAME made of "
            f"letters, digits and ':_.\\-' and TYPE one of {', '.join(UNIT_TYPES)}"
        )
    if match.group("at") and not match.group("instance"):
        raise InvalidInput(f"{option}: {text!r} is a template; name an instance such as "
                           f"{match.group('prefix')}@NAME.{match.group('type')}")
    return text


def normalise_units(units: Any, option: str = "units") -> list[str]:
    """A name or a list of names → validated, de-duplicated names in the order given."""
    if isinstance(units, str):
        units = [units]
    if not units:
        raise InvalidInput(f"{option}: give at least one unit name")
    names: list[str] = []
    for unit in units:
        normalised = normalise_unit_name(unit, option)
        if normalised not in names:
            names.append(normalised)
    return names


def parse_since(value: Any, now: float, option: str = "journal_since") -> Optional[datetime]:
    """``15m``/``1h``/``2d`` (an age) or an ISO 8601 time with a zone → an aware UTC datetime; None stays None."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    match = _DURATION_RE.match(text)
    if match:
        seconds = float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        return datetime.fromtimestamp(now - seconds, tz=timezone.utc)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{option}: expected an age such as 15m, 1h or 2d, or an ISO 8601 time, got {text!r}") from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{option}: {text!r} has no time zone; add one (Z or +00:00)")
    return parsed.astimezone(timezone.utc)


def normalise_priority(value: Any, option: str = "journal_priority") -> Optional[str]:
    """A syslog priority name or number 0-7 → the name journalctl takes; None stays None."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    aliases = {"error": "err", "warn": "warning", "crit": "crit", "critical": "crit", "emergency": "emerg", "panic": "emerg"}
    text = aliases.get(text, text)
    if text.isdigit() and int(text) < len(JOURNAL_PRIORITIES):
        return JOURNAL_PRIORITIES[int(text)]
    if text in JOURNAL_PRIORITIES:
        return text
    raise InvalidInput(f"{option}: expected one of {', '.join(JOURNAL_PRIORITIES)} or 0-7, got {value!r}")


# --------------------------------------------------------------------------- parsing


def parse_show_output(text: str) -> list[dict[str, str]]:
    """``systemctl show`` output for several units → one dict per unit, in the order printed (blank-line separated)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key] = value
    if current:
        blocks.append(current)
    return blocks


def parse_timestamp(value: Optional[str]) -> Optional[datetime]:
    """``Mon 2026-11-23 10:25:30 UTC`` (systemctl with TZ=UTC) → aware datetime; empty/unknown → None."""
    if not value or value in _UNSET or value == "n/a":
        return None
    match = _TIMESTAMP_RE.match(value.strip())
    if not match:
        return None
    parsed = datetime.strptime(f"{match.group('date')} {match.group('time')}", "%Y-%m-%d %H:%M:%S")
    if match.group("frac"):
        parsed = parsed.replace(microsecond=int(match.group("frac").ljust(6, "0")))
    zone = match.group("zone")
    if zone in (None, "UTC", "GMT"):
        return parsed.replace(tzinfo=timezone.utc)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return parsed.replace(tzinfo=timezone(sign * offset))


def _int_or_none(value: Optional[str]) -> Optional[int]:
    if value is None or value.strip() in _UNSET:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _yes(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "1")


def _iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.isoformat() if moment else None


def format_age(seconds: float) -> str:
    """A rough human age like systemctl status prints: ``45s``, ``3 min``, ``2h 5min``, ``3 days 4h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        return f"{hours}h {rest // 60}min" if rest >= 60 else f"{hours}h"
    days, rest = divmod(seconds, 86400)
    unit = "day" if days == 1 else "days"
    return f"{days} {unit} {rest // 3600}h" if rest >= 3600 else f"{days} {unit}"


def _signal_name(number: Optional[int]) -> str:
    try:
        return signal.Signals(number).name if number else str(number)
    except ValueError:
        return f"signal {number}"


def _failure_detail(result: str, code: Optional[str], status: Optional[int]) -> str:
    """``exit-code 1``, ``signal SIGKILL``, ``core-dump SIGSEGV``, ``timeout``…"""
    if result == "exit-code" and status is not None:
        return f"exit-code {status}"
    if result in ("signal", "core-dump") and code in ("killed", "dumped") and status:
        return f"{result} {_signal_name(status)}"
    if result == "start-limit-hit":
        return "start-limit-hit: restarted too often"
    return result or "unknown"


# --------------------------------------------------------------------------- assessment


def unit_report(name: str, props: dict[str, str], now: float, max_restarts: int = 0) -> dict[str, Any]:
    """One unit's ``systemctl show`` properties → the module's per-unit result, with ``healthy`` and ``problems``."""
    load_state = props.get("LoadState", "")
    active_state = props.get("ActiveState", "")
    sub_state = props.get("SubState", "")
    result = props.get("Result", "")
    unit_type = props.get("Id", name).rsplit(".", 1)[-1]
    code = _EXEC_MAIN_CODES.get(_int_or_none(props.get("ExecMainCode")) or 0)
    status = _int_or_none(props.get("ExecMainStatus")) if code else None
    n_restarts = _int_or_none(props.get("NRestarts")) if unit_type == "service" else None
    since = parse_timestamp(props.get("StateChangeTimestamp"))
    active_enter = parse_timestamp(props.get("ActiveEnterTimestamp"))
    uptime = round(now - active_enter.timestamp(), 3) if active_enter and active_state in ("active", "reloading") else None
    remain_after_exit = _yes(props.get("RemainAfterExit"))
    main_pid = _int_or_none(props.get("MainPID"))

    report: dict[str, Any] = {
        "name": name,
        "id": props.get("Id") or name,
        "description": props.get("Description"),
        "load_state": load_state,
        "load_error": props.get("LoadError") or None,
        "active_state": active_state,
        "sub_state": sub_state,
        "unit_file_state": props.get("UnitFileState") or None,
        "result": result or None,
        "type": props.get("Type") or None,
        "restart": props.get("Restart") or None,
        "remain_after_exit": remain_after_exit,
        "main_pid": main_pid or None,
        "exec_main_pid": _int_or_none(props.get("ExecMainPID")) or None,
        "exec_main_code": code,
        "exec_main_status": status,
        "exec_main_start_timestamp": _iso(parse_timestamp(props.get("ExecMainStartTimestamp"))),
        "exec_main_exit_timestamp": _iso(parse_timestamp(props.get("ExecMainExitTimestamp"))),
        "n_restarts": n_restarts,
        "since": _iso(since),
        "active_enter_timestamp": _iso(active_enter),
        "active_exit_timestamp": _iso(parse_timestamp(props.get("ActiveExitTimestamp"))),
        "uptime_seconds": uptime,
        "memory_current": _int_or_none(props.get("MemoryCurrent")),
        "tasks_current": _int_or_none(props.get("TasksCurrent")),
        "cpu_usage_nsec": _int_or_none(props.get("CPUUsageNSec")),
        "fragment_path": props.get("FragmentPath") or None,
        "drop_in_paths": (props.get("DropInPaths") or "").split(),
        "need_daemon_reload": _yes(props.get("NeedDaemonReload")),
    }
    age = f"{format_age(now - since.timestamp())} ago" if since else None
    problems: list[str] = []
    detail = _failure_detail(result, code, status)

    if load_state == "not-found":
        problems.append("not found")
    elif load_state == "masked":
        problems.append("masked")
    elif load_state != "loaded":
        problems.append(f"not loaded ({load_state or 'unknown'}): {props.get('LoadError') or 'no error given'}")

    active_ok = False
    if load_state == "loaded":
        if active_state == "failed":
            problems.append(f"failed ({detail})" + (f" {age}" if age else ""))
        elif active_state == "activating" and sub_state == "auto-restart":
            problems.append(f"crashed ({detail})" + (f" {age}" if age else "") + ", waiting to restart")
        elif active_state == "activating":
            problems.append(f"still starting ({sub_state})" + (f" for {format_age(now - since.timestamp())}" if since else ""))
        elif active_state == "deactivating":
            problems.append(f"stopping ({sub_state})")
        elif active_state == "inactive":
            if result and result != "success":
                problems.append(f"inactive, last run failed ({detail})" + (f" {age}" if age else ""))
            elif active_enter or since:
                problems.append(f"inactive ({sub_state})" + (f" since {age}" if age else ""))
            else:
                problems.append("inactive (never started)")
        elif active_state in ("active", "reloading"):
            if unit_type != "service" or sub_state in _RUNNING_SUB_STATES or (sub_state == "exited" and remain_after_exit):
                active_ok = True
            else:
                problems.append(f"active but {sub_state or 'no sub-state'} (no main process)")
        else:
            problems.append(f"{active_state or 'unknown state'} ({sub_state})")
        if active_ok and result and result != "success":
            problems.append(f"last result {detail}")
    result_ok = not result or result == "success"
    restarts_ok = n_restarts is None or n_restarts <= max_restarts
    if n_restarts:
        problems.append(f"restarted {n_restarts} time{'s' if n_restarts != 1 else ''}")
    if report["need_daemon_reload"]:
        problems.append("unit file changed on disk; systemctl daemon-reload needed")

    report["healthy"] = load_state == "loaded" and active_ok and result_ok and restarts_ok
    report["problems"] = problems
    return report


def dependency_names(props: dict[str, str], include_implicit: bool = False) -> dict[str, list[str]]:
    """Direct dependencies from Requires/Requisite/BindsTo/Upholds/Wants/After → {dependency: [relations]}."""
    found: dict[str, list[str]] = {}
    for prop, relation in RELATIONS:
        for dep in (props.get(prop) or "").split():
            if not include_implicit and dep in IMPLICIT_DEPENDENCIES:
                continue
            found.setdefault(dep, [])
            if relation not in found[dep]:
                found[dep].append(relation)
    return found


def dependency_report(name: str, relations: list[str], props: dict[str, str]) -> dict[str, Any]:
    """A dependency's state and, when it can hold the unit back, why (``problem``)."""
    load_state = props.get("LoadState", "")
    active_state = props.get("ActiveState", "")
    sub_state = props.get("SubState", "")
    hard = any(relation in HARD_RELATIONS for relation in relations)
    problem = None
    if active_state == "failed":
        problem = f"dependency {name} failed ({props.get('Result') or 'unknown'})"
    elif active_state == "activating" and sub_state == "auto-restart":
        problem = f"dependency {name} crashed and is waiting to restart"
    elif hard and load_state != "loaded":
        problem = f"required dependency {name} is {load_state or 'not loaded'}"
    return {
        "unit": name,
        "relations": relations,
        "description": props.get("Description"),
        "load_state": load_state,
        "active_state": active_state,
        "sub_state": sub_state,
        "result": props.get("Result") or None,
        "unit_file_state": props.get("UnitFileState") or None,
        "problem": problem,
    }


# --------------------------------------------------------------------------- commands


def default_runner(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run ``argv`` (no shell) with the parseable environment."""
    env = dict(os.environ, **COMMAND_ENV)
    completed = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=120, check=False)
    return completed.returncode, completed.stdout, completed.stderr


def find_binary(name: str, search_path: Optional[str] = None) -> Optional[str]:
    """``name`` on PATH or in the usual bin/sbin directories."""
    path = search_path if search_path is not None else os.pathsep.join([os.environ.get("PATH", ""), *BIN_SEARCH_PATH])
    return shutil.which(name, path=path)


def _pid1_name(proc_root: str) -> str:
    try:
        with open(os.path.join(proc_root, "1", "comm"), encoding="utf-8") as handle:
            return handle.read().strip() or "unknown"
    except OSError:
        return "unknown"


def check_systemd_host(systemctl: Optional[str], run_root: str = "/run", proc_root: str = "/proc") -> None:
    """Fail clearly unless this host runs systemd as PID 1 (what sd_booted() checks)."""
    pid1 = _pid1_name(proc_root)
    if not systemctl:
        raise SystemdUnavailable(
            f"systemctl was not found on this host (PATH and {', '.join(BIN_SEARCH_PATH)}): it does not run systemd "
            f"(PID 1 is {pid1!r}). service_status needs a systemd host; use a service manager-specific check instead."
        )
    if not os.path.isdir(os.path.join(run_root, "systemd", "system")):
        raise SystemdUnavailable(
            f"{systemctl} exists but this host was not booted with systemd ({run_root}/systemd/system is missing, "
            f"PID 1 is {pid1!r}), as in a plain container; there are no units to inspect."
        )


class Systemctl:
    """The two commands this module reads, behind an injectable runner."""

    def __init__(self, runner: Runner, systemctl: str = "systemctl", journalctl: Optional[str] = "journalctl"):
        self.runner = runner
        self.systemctl = systemctl
        self.journalctl = journalctl
        self.commands: list[list[str]] = []

    def _run(self, argv: list[str]) -> tuple[int, str, str]:
        self.commands.append(argv)
        return self.runner(argv)

    def show(self, units: Sequence[str], properties: Sequence[str]) -> list[dict[str, str]]:
        """Properties of every unit in one ``systemctl show`` call; one dict per unit, in the order given."""
        argv = [self.systemctl, "show", "--no-pager", "-p", ",".join(properties), "--", *units]
        rc, out, err = self._run(argv)
        if rc != 0:
            detail = (err or out).strip()
            if "not been booted with systemd" in detail or "Failed to connect to bus" in detail:
                raise SystemdUnavailable(f"systemctl cannot reach the service manager on this host: {detail}")
            raise CommandFailed(f"systemctl show failed with exit code {rc}: {detail[-1000:]}")
        blocks = parse_show_output(out)
        if len(blocks) != len(units):
            raise CommandFailed(f"systemctl show printed {len(blocks)} unit blocks for {len(units)} units: {out[:500]!r}")
        return blocks

    def journal(self, unit: str, lines: int, since: Optional[datetime] = None,
                priority: Optional[str] = None) -> tuple[list[str], Optional[str]]:
        """The last ``lines`` journal lines of ``unit`` (oldest first) and a warning, if journalctl gave one."""
        if not self.journalctl:
            return [], "journalctl was not found on this host"
        argv = [self.journalctl, "--no-pager", "--quiet", "-o", "short-iso", "-n", str(lines)]
        if since is not None:
            argv += ["--since", since.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")]
        if priority:
            argv += ["-p", priority]
        argv += ["-u", unit]
        rc, out, err = self._run(argv)
        warning = err.strip() or None
        if rc != 0:
            return [], f"journalctl failed with exit code {rc}: {warning or out.strip()}"
        text_lines = [line[:JOURNAL_LINE_MAX] for line in out.splitlines() if line and not line.startswith("-- ")]
        return text_lines[-lines:], warning


# --------------------------------------------------------------------------- entry point


def check_options(units: Any, now: float, journal_lines: Any = 20, journal_since: Any = None, journal_priority: Any = None,
                  max_restarts: Any = 0) -> tuple[list[str], Optional[datetime], Optional[str]]:
    """Every option checked before systemd is asked anything: (unit names, journal since, journal priority)."""
    names = normalise_units(units)
    if journal_lines is None or journal_lines < 0:
        raise InvalidInput(f"journal_lines: expected 0 or more lines, got {journal_lines!r}")
    if max_restarts is None or max_restarts < 0:
        raise InvalidInput(f"max_restarts: expected 0 or more, got {max_restarts!r}")
    return names, parse_since(journal_since, now), normalise_priority(journal_priority)


def collect(units: Any, systemctl: Systemctl, now: Optional[float] = None, journal_lines: int = 20,
            journal_since: Any = None, journal_priority: Any = None, include_dependencies: bool = False,
            include_implicit_dependencies: bool = False, max_restarts: int = 0) -> dict[str, Any]:
    """Status of ``units`` (names or a list) as the module returns it."""
    now = time.time() if now is None else now
    names, since, priority = check_options(units, now, journal_lines, journal_since, journal_priority, max_restarts)

    blocks = systemctl.show(names, PROPERTIES)
    reports = {name: unit_report(name, props, now, max_restarts) for name, props in zip(names, blocks)}

    if include_dependencies:
        per_unit = {name: dependency_names(props, include_implicit_dependencies) for name, props in zip(names, blocks)}
        wanted: list[str] = []
        for deps in per_unit.values():
            wanted.extend(dep for dep in deps if dep not in wanted)
        dep_props = dict(zip(wanted, systemctl.show(wanted, DEPENDENCY_PROPERTIES))) if wanted else {}
        for name, deps in per_unit.items():
            entries = [dependency_report(dep, relations, dep_props[dep]) for dep, relations in deps.items()]
            reports[name]["dependencies"] = entries
            reports[name]["problems"].extend(entry["problem"] for entry in entries if entry["problem"])
            reports[name]["dependencies_healthy"] = not any(entry["problem"] for entry in entries)

    if journal_lines:
        for report in reports.values():
            # By systemd's own name: an alias (sshd.service) has no journal entries of its own.
            report["journal"], report["journal_warning"] = systemctl.journal(report["id"], journal_lines, since, priority)

    unhealthy = [name for name, report in reports.items() if not report["healthy"]]
    summary_parts = [f"{len(names)} unit{'s' if len(names) != 1 else ''}: {len(names) - len(unhealthy)} healthy"]
    if unhealthy:
        summary_parts.append(f"{len(unhealthy)} unhealthy (" + "; ".join(
            f"{name}: {', '.join(reports[name]['problems']) or 'unhealthy'}" for name in unhealthy) + ")")
    return {
        "units": reports,
        "healthy": not unhealthy,
        "unhealthy": unhealthy,
        "summary": ", ".join(summary_parts),
        "journal_since": _iso(since),
        "commands": systemctl.commands,
    }
