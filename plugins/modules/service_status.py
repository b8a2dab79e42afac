#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module service_status: state, restarts, uptime, journal and dependencies of systemd units."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: service_status
short_description: Report systemd units' state, restarts, uptime, recent journal lines and dependencies
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Reads the state of one or more systemd units with a single C(systemctl show) call and returns, per unit,
    the load, active and sub state, the last result and exit status, restarts, uptime, memory, tasks and CPU,
    a C(healthy) verdict and a human readable list of C(problems).
  - Optionally adds the last lines of each unit's journal (C(journalctl -u UNIT -o short-iso)) and each direct
    dependency's state, so a failing dependency is visible next to the unit that needs it.
  - 'Replaces the runbooks'' C(systemctl status heart-disease-api), C(systemctl status heart-disease-worker),
    C(check_dependencies.py --all) and "Check application status" steps.'
  - Commands run as argument lists, never through a shell. Never changes anything; runs fully in check mode.
options:
  units:
    description:
      - Unit names, for example V(heart-disease-api) or V(residency-scheduler-celery-worker.service).
      - A name without a unit type gets C(.service), as with C(systemctl).
      - Names must follow systemd's unit-name grammar (C(NAME[@INSTANCE].TYPE)); glob patterns and templates
        without an instance are rejected.
    type: list
    elements: str
    required: true
    aliases: [name, unit]
  journal_lines:
    description:
      - Number of journal lines returned per unit (the newest, oldest first). V(0) skips the journal.
    type: int
    default: 20
  journal_since:
    description:
      - Only journal lines from this time on. An age (V(15m), V(1h), V(2d)) or an ISO 8601 time with a time zone.
    type: str
  journal_priority:
    description:
      - Only journal lines of this syslog priority or more severe, for example V(err) or V(warning) (or V(0)-V(7)).
    type: str
  include_dependencies:
    description:
      - Add each unit's direct dependencies (C(Requires=), C(Requisite=), C(BindsTo=), C(Upholds=), C(Wants=),
        C(After=)) with their states, read with one more C(systemctl show) call for all of them.
      - A dependency that failed or waits to restart, or a hard requirement that is not loaded, adds a problem.
    type: bool
    default: false
  include_implicit_dependencies:
    description:
      - Also list the dependencies every service gets from C(DefaultDependencies=yes) (C(sysinit.target),
        C(basic.target), C(system.slice), the journal socket…), hidden by default.
    type: bool
    default: false
  max_restarts:
    description:
      - A service that systemd restarted automatically more often than this since it was last started by hand is
        not healthy (a crash loop can look C(active/running) between two crashes).
    type: int
    default: 0
notes:
  - Supports check mode; the module never changes anything.
  - 'A unit is healthy when it is loaded; active, and for a service running (or C(exited) with
    C(RemainAfterExit=yes), the oneshot pattern); its last result is C(success); and it was restarted automatically
    at most O(max_restarts) times. Other unit types (sockets, timers, targets, mounts) only need to be active.
    Dependencies do not change C(healthy); their problems are listed in C(problems) and C(dependencies_healthy).'
  - A unit that does not exist is reported with C(load_state=not-found) and C(healthy=false); the module does not fail.
  - The module fails on a host that does not run systemd as PID 1.
  - C(memory_current), C(tasks_current) and C(cpu_usage_nsec) are null where systemd does not account them.
  - Reading the journal of system units needs root or the C(systemd-journal)/C(adm) group; otherwise C(journal)
    is empty and C(journal_warning) says why.
requirements:
  - systemd on the managed host (C(systemctl), C(journalctl)).
attributes:
  check_mode:
    description: Can run in check mode and return the same result.
    support: full
  diff_mode:
    description: Reports nothing as a diff; it changes nothing.
    support: none
"""

EXAMPLES = r"""
- name: Service Disruption - state of the ML API and worker, with their dependencies
  sre.runbooks.service_status:
    units:
      - heart-disease-api
      - heart-disease-worker
    include_dependencies: true
  register: ml_services

- name: Show what is wrong
  ansible.builtin.debug:
    msg: "{{ ml_services.summary }}"

- name: Residency Scheduler - check application status, errors of the last 30 minutes only
  sre.runbooks.service_status:
    units:
      - residency-scheduler-backend
      - residency-scheduler-celery-worker
      - residency-scheduler-celery-beat
      - residency-scheduler-db
      - residency-scheduler-redis
    journal_since: 30m
    journal_priority: err
  register: scheduler

- name: Fail the play when a service is down
  ansible.builtin.assert:
    that: scheduler.healthy
    fail_msg: "{{ scheduler.summary }}"
"""

RETURN = r"""
healthy:
  description: Whether every unit asked about is healthy (see the notes for the rule).
  returned: success
  type: bool
  sample: false
unhealthy:
  description: Names of the units that are not healthy, in the order given.
  returned: success
  type: list
  elements: str
  sample: ["heart-disease-worker.service"]
summary:
  description: One line for a human.
  returned: success
  type: str
  sample: "2 units: 1 healthy, 1 unhealthy (heart-disease-worker.service: failed (exit-code 1) 3 min ago)"
journal_since:
  description: The resolved O(journal_since), ISO 8601 UTC, or null.
  returned: success
  type: str
commands:
  description: The commands run, as argument lists (audit trail).
  returned: success
  type: list
  elements: list
units:
  description: One entry per unit, keyed by the normalised unit name, in the order given.
  returned: success
  type: dict
  contains:
    name:
      description: The unit name as asked for (normalised).
      type: str
      sample: heart-disease-api.service
    id:
      description: systemd's name of the unit (differs from C(name) for an alias, e.g. C(sshd.service) is C(ssh.service)).
      type: str
    description:
      description: The unit's C(Description=).
      type: str
    load_state:
      description: C(loaded), C(not-found), C(masked), C(bad-setting), C(error).
      type: str
      sample: loaded
    load_error:
      description: Why the unit could not be loaded, or null.
      type: str
    active_state:
      description: C(active), C(failed), C(activating), C(deactivating), C(inactive), C(reloading).
      type: str
      sample: active
    sub_state:
      description: Type-specific state, e.g. C(running), C(exited), C(dead), C(failed), C(auto-restart).
      type: str
      sample: running
    unit_file_state:
      description: C(enabled), C(disabled), C(static), C(masked)…, or null when there is no unit file.
      type: str
    result:
      description: Result of the last run, e.g. C(success), C(exit-code), C(signal), C(timeout), C(start-limit-hit).
      type: str
    type:
      description: Service type (C(simple), C(oneshot), C(notify)…), null for other unit types.
      type: str
    restart:
      description: The C(Restart=) policy.
      type: str
    remain_after_exit:
      description: C(RemainAfterExit=).
      type: bool
    main_pid:
      description: PID of the main process, or null when none runs.
      type: int
    exec_main_pid:
      description: PID of the last main process, also after it exited.
      type: int
    exec_main_code:
      description: How the last main process ended (C(exited), C(killed), C(dumped)), or null.
      type: str
    exec_main_status:
      description: Its exit status, or the signal number when killed.
      type: int
    exec_main_start_timestamp:
      description: When the last main process started, ISO 8601.
      type: str
    exec_main_exit_timestamp:
      description: When the last main process exited, ISO 8601.
      type: str
    n_restarts:
      description: Automatic restarts since the unit was last started by hand (services only, else null).
      type: int
    since:
      description: When the unit entered its current state, ISO 8601 (what C(systemctl status) shows after C(since)).
      type: str
    active_enter_timestamp:
      description: When the unit last became active, ISO 8601.
      type: str
    active_exit_timestamp:
      description: When the unit last stopped being active, ISO 8601.
      type: str
    uptime_seconds:
      description: Seconds since the unit became active, null when it is not active.
      type: float
    memory_current:
      description: Memory in bytes, null when not accounted.
      type: int
    tasks_current:
      description: Tasks (threads), null when not accounted.
      type: int
    cpu_usage_nsec:
      description: CPU time in nanoseconds, null when not accounted.
      type: int
    fragment_path:
      description: The unit file.
      type: str
    drop_in_paths:
      description: Drop-in files applied to the unit.
      type: list
      elements: str
    need_daemon_reload:
      description: Whether the unit file changed on disk since systemd loaded it.
      type: bool
    healthy:
      description: Whether the unit is healthy.
      type: bool
    problems:
      description: "What is wrong, for a human: 'failed (exit-code 1) 3 min ago', 'restarted 5 times', 'not found'."
      type: list
      elements: str
    journal:
      description: The last O(journal_lines) journal lines (C(short-iso)), oldest first.
      type: list
      elements: str
      returned: when O(journal_lines) > 0
    journal_warning:
      description: What journalctl complained about (e.g. no permission), or null.
      type: str
      returned: when O(journal_lines) > 0
    dependencies:
      description: Direct dependencies with C(unit), C(relations) (C(requires), C(wants), C(after)…), C(description),
        C(load_state), C(active_state), C(sub_state), C(result), C(unit_file_state) and C(problem) (null when fine).
      type: list
      elements: dict
      returned: when O(include_dependencies=true)
    dependencies_healthy:
      description: Whether no dependency has a problem.
      type: bool
      returned: when O(include_dependencies=true)
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._systemd import (
    COMMAND_ENV,
    BIN_SEARCH_PATH,
    InvalidInput,
    SystemdError,
    Systemctl,
    check_options,
    check_systemd_host,
    collect,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "str", "required": True, "aliases": ["name", "unit"]},
            "journal_lines": {"type": "int", "default": 20},
            "journal_since": {"type": "str"},
            "journal_priority": {"type": "str"},
            "include_dependencies": {"type": "bool", "default": False},
            "include_implicit_dependencies": {"type": "bool", "default": False},
            "max_restarts": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    params = module.params

    def runner(argv):
        return module.run_command(list(argv), environ_update=COMMAND_ENV, check_rc=False)

    try:
        # bad options are named before anything else, also on a host without systemd
        check_options(params["units"], time.time(), params["journal_lines"], params["journal_since"], params["journal_priority"],
                      params["max_restarts"])
        systemctl_path = module.get_bin_path("systemctl", opt_dirs=list(BIN_SEARCH_PATH))
        check_systemd_host(systemctl_path)
        systemctl = Systemctl(runner, systemctl_path,
                              module.get_bin_path("journalctl", opt_dirs=list(BIN_SEARCH_PATH)))
        result = collect(
            params["units"], systemctl,
            journal_lines=params["journal_lines"],
            journal_since=params["journal_since"],
            journal_priority=params["journal_priority"],
            include_dependencies=params["include_dependencies"],
            include_implicit_dependencies=params["include_implicit_dependencies"],
            max_restarts=params["max_restarts"],
        )
    except InvalidInput as exc:
        module.fail_json(msg=f"Invalid option: {exc}")
    except SystemdError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
