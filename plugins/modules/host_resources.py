#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_resources
short_description: CPU, memory, top processes, memory growth, disks and TCP connections from /proc
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Answers the HighCPUUsage, LowMemory and SlowResponseTime steps "check process list (top)", "review memory usage
    by process", "check for memory leaks", "review system resources", and the incident runbook's
    C(check_resources.py --all), C(analyze_load.py) and C(check_network.py).
  - Reads C(/proc) twice, O(interval) seconds apart. CPU percentages (host and per process) and per-process
    memory growth are computed between the two samples; processes whose resident memory grew by O(leak_growth_bytes)
    or by O(leak_growth_percent) (and at least 1 MiB) are RV(leak_suspects).
  - Command lines are truncated and secrets in them are hidden (C(--password x), C(password=x), C(token=x),
    C(secret), C(api_key), credentials in URLs, C(Authorization) headers).
  - Linux only; needs no Python library (no psutil). Works inside containers such as systemd-nspawn machines,
    where C(/proc) shows the container's processes and network but the host's CPU and memory totals.
  - Read-only; never changes anything and runs fully in check mode.
options:
  interval:
    description: Seconds between the two samples, more than 0 and at most 300.
    type: float
    default: 2
  top:
    description: Number of processes in RV(top_cpu), RV(top_memory) and RV(leak_suspects), and of remote addresses per port.
    type: int
    default: 10
  per_core:
    description: Also return the busy percent of each CPU core.
    type: bool
    default: false
  paths:
    description: Absolute paths whose file system usage is reported (like C(df)). A missing path is reported with an C(error), not a failure.
    type: list
    elements: path
    default: [/]
  ports:
    description:
      - TCP ports whose connections are counted from C(/proc/net/tcp) and C(/proc/net/tcp6), for example V(8000) for
        the API, V(5432) for PostgreSQL or V(6379) for Redis.
      - Both directions are reported, connections to a local listener (C(inbound)) and from this host to that port elsewhere (C(outbound)).
    type: list
    elements: int
    default: []
  leak_growth_bytes:
    description: Resident memory growth in bytes between the samples that makes a process a leak suspect.
    type: int
    default: 8388608
  leak_growth_percent:
    description: Resident memory growth in percent between the samples that makes a process a leak suspect (when it is at least 1 MiB).
    type: float
    default: 20
  cmdline_length:
    description: Command lines are cut to this many characters.
    type: int
    default: 200
  thresholds:
    description: Limits the RV(findings) sentences are written against; they never make the module fail.
    type: dict
    default: {}
    suboptions:
      cpu_busy_percent:
        description: CPU busy percent from which the host is reported as CPU bound (the HighCPUUsage alert uses 80).
        type: float
        default: 80
      memory_available_percent:
        description: Available memory percent below which memory is reported as low (the LowMemory alert uses 10).
        type: float
        default: 10
      disk_used_percent:
        description: File system usage percent from which a path is reported as full.
        type: float
        default: 90
notes:
  - CPU percent per process is relative to one core, as in C(top), so it can exceed 100 for multi-threaded processes.
  - A process that started during the interval has all of its CPU time counted and no memory growth (C(new=true) in RV(top_cpu)).
"""

EXAMPLES = r"""
- name: Resources of an API host, with connections to the API and the database
  sre.runbooks.host_resources:
    interval: 5
    top: 5
    paths: [/, /var/lib/postgresql]
    ports: [8000, 5432]
  register: resources

- name: Report the leak suspects
  ansible.builtin.debug:
    msg: "{{ resources.leak_suspects | map(attribute='cmdline') | list }}"
  when: resources.leak_suspects | length > 0
"""

RETURN = r"""
interval_seconds:
  description: Measured time between the two samples.
  returned: always
  type: float
  sample: 2.002
cpu:
  description: Percent of CPU time C(busy), C(user), C(system), C(iowait) and C(steal) over the interval, the number of
    C(cores), and C(per_core) busy percent when O(per_core=true).
  returned: always
  type: dict
  sample: {"busy": 92.5, "user": 85.0, "system": 7.5, "iowait": 0.0, "steal": 0.0, "cores": 2}
load:
  description: Load averages C(1m), C(5m), C(15m), the same divided by the cores (C(per_core_*)), C(running_tasks) and C(total_tasks).
  returned: always
  type: dict
  sample: {"1m": 2.4, "5m": 1.9, "15m": 1.2, "per_core_1m": 1.2, "per_core_5m": 0.95, "per_core_15m": 0.6}
memory:
  description: C(total_bytes), C(available_bytes), C(available_percent), C(used_percent), C(cached_bytes) and swap
    (C(swap_total_bytes), C(swap_used_bytes), C(swap_used_percent)).
  returned: always
  type: dict
  sample: {"total_bytes": 8201089024, "available_bytes": 656087121, "available_percent": 8.0, "used_percent": 92.0}
processes:
  description: Counts of processes - C(total), C(running) and C(zombie).
  returned: always
  type: dict
top_cpu:
  description:
    - Processes using the most CPU over the interval, each with C(pid), C(ppid), C(name), C(user), C(state), C(threads),
      C(cpu_percent), C(rss_bytes), C(rss_growth_bytes), C(rss_growth_percent), C(fds) (open file descriptors, V(null)
      when not readable), C(new) and C(cmdline) (redacted and truncated).
  returned: always
  type: list
  elements: dict
  sample: [{"pid": 4242, "name": "uvicorn", "cpu_percent": 97.0, "rss_bytes": 310378496, "rss_growth_bytes": 0, "fds": 41,
            "cmdline": "/srv/app/.venv/bin/uvicorn app.main:app --port 8000"}]
top_memory:
  description: Processes with the largest resident memory, with the same fields as RV(top_cpu).
  returned: always
  type: list
  elements: dict
leak_suspects:
  description: Processes whose resident memory grew past O(leak_growth_bytes) or O(leak_growth_percent) over the interval,
    largest growth first, with the fields of RV(top_cpu) and C(growth_bytes_per_second).
  returned: always
  type: list
  elements: dict
disks:
  description: Per O(paths) entry C(path), C(total_bytes), C(used_bytes), C(available_bytes), C(used_percent),
    C(inodes_total) and C(inodes_used_percent), or C(path) and C(error).
  returned: always
  type: list
  elements: dict
file_descriptors:
  description: System-wide C(allocated) and C(max) file handles from C(/proc/sys/fs/file-nr).
  returned: always
  type: dict
connections:
  description:
    - Per O(ports) entry C(port), C(listening), C(inbound) (C(total), C(established), C(states), C(top_remote) addresses
      of established connections) and C(outbound) (C(total), C(established), C(states)).
  returned: when O(ports) is set
  type: list
  elements: dict
  sample: [{"port": 5432, "listening": true, "inbound": {"total": 97, "established": 95, "states": {"ESTABLISHED": 95, "TIME_WAIT": 2},
            "top_remote": [{"address": "10.0.0.5", "count": 60}]}, "outbound": {"total": 0, "established": 0, "states": {}}}]
findings:
  description: Sentences for the incident report, written against O(thresholds).
  returned: always
  type: list
  elements: str
  sample: ["CPU 92.5% busy over the interval (threshold 80%); top process uvicorn (pid 4242) at 97.0%"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._host_resources import collect


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "interval": {"type": "float", "default": 2},
            "top": {"type": "int", "default": 10},
            "per_core": {"type": "bool", "default": False},
            "paths": {"type": "list", "elements": "path", "default": ["/"]},
            "ports": {"type": "list", "elements": "int", "default": []},
            "leak_growth_bytes": {"type": "int", "default": 8 * 1024 * 1024},
            "leak_growth_percent": {"type": "float", "default": 20},
            "cmdline_length": {"type": "int", "default": 200},
            "thresholds": {"type": "dict", "default": {}, "options": {
                "cpu_busy_percent": {"type": "float", "default": 80},
                "memory_available_percent": {"type": "float", "default": 10},
                "disk_used_percent": {"type": "float", "default": 90},
            }},
        },
        supports_check_mode=True,
    )
    try:
        result = collect(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot read /proc ({exc}): host_resources needs a Linux host with /proc mounted")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
