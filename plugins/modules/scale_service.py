#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: scale_service
short_description: Scale a service up or down (template instances or standby hosts), health-gated, with load-balancer membership
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Makes the running instances of a systemd template unit (C(name@N.service)) exactly O(instances), the scaling step of the
    HighResponseTime / HighCPU runbooks.
  - Scale up is one instance at a time, started, then polled at O(health_url) until it passes O(health_passes) checks in a row, and only
    then added to the load balancer's upstream file (configuration tested with O(lb_check_command), then O(lb_reload_command)).
    An instance that does not become healthy within O(health_timeout) is stopped again, never reaches the load balancer, and the
    rollout stops there (the module fails and reports how far it got).
  - Scale down takes the highest instances out of the load balancer first, waits O(drain) seconds, then stops them.
    O(min_instances) and O(max_instances) bound the result.
  - The upstream file is replaced atomically; when the configuration test fails the previous file is put back before any reload,
    so the balancer keeps serving its previous members. With HAProxy and O(lb_runtime_socket), the running HAProxy is asked (Runtime
    API C(show servers state)) whether it has exactly the new members, all up; if not within O(lb_runtime_timeout) the previous file is
    put back and reloaded.
  - B(Standby hosts of a group) take two tasks in a play over the standby group with C(serial=1) and C(max_fail_percentage=0)
    (see EXAMPLES). O(mode=host), on the standby host, starts its unit O(unit) and waits for O(health_url); an instance that does not
    become healthy is stopped again and the task fails, which stops the play, so the rollout stops there. O(mode=members), delegated to
    the load balancer host, then adds the host's address (O(members), O(members_state=present)) once the balancer itself sees it healthy
    at O(health_url). Scale in is the reverse, first O(members_state=absent) on the balancer (drained), then O(state=stopped) on the host.
options:
  mode:
    description:
      - V(template) makes the instances of the template unit O(template) exactly O(instances), on this host, and manages the balancer.
      - V(host) starts (O(state=started), health-gated) or stops this host's O(unit), one standby host of a group.
      - V(members) only changes the balancer's members (O(members), O(members_state)); run it on the load balancer host.
    type: str
    choices: [template, host, members]
    default: template
  template:
    description:
      - The template's name without C(@) and suffix, for example V(residency-scheduler-backend) for C(residency-scheduler-backend@.service).
      - Required with O(mode=template).
    type: str
  instances:
    description: The instance names that should run, typically ports, such as V([8001, 8002, 8003]). Required with O(mode=template).
    type: list
    elements: str
  unit:
    description: With O(mode=host), the unit on this host, such as V(residency-scheduler-backend.service).
    type: str
  state:
    description: With O(mode=host), V(started) (and healthy) or V(stopped).
    type: str
    choices: [started, stopped]
    default: started
  members:
    description:
      - With O(mode=members), the balancer members, V(ADDRESS) or V(NAME=ADDRESS) (NAME is the HAProxy server name, such as
        V(app3=10.0.0.13:8000); without it the name is made from the address).
    type: list
    elements: str
  members_state:
    description: With O(mode=members), V(present) adds O(members), V(absent) removes them, V(exact) makes them the only members.
    type: str
    choices: [present, absent, exact]
    default: present
  min_members:
    description: With O(mode=members), never leave fewer members than this (the balancer is never emptied by accident).
    type: int
    default: 1
  lb_runtime_socket:
    description:
      - HAProxy's Runtime API socket (C(stats socket ... level admin) in C(haproxy.cfg)). After each reload the running HAProxy must list
        exactly the new members of O(lb_name), all up (operational state 2), within O(lb_runtime_timeout).
      - Without it, O(mode=members) and O(mode=template) trust the configuration test and the reload.
    type: path
  lb_runtime_timeout:
    description: Seconds the running HAProxy has to show the new members after a reload.
    type: float
    default: 10
  enable:
    description: Enable instances (survive a reboot) as well as start them, and disable them when stopping.
    type: bool
    default: true
  health_url:
    description:
      - URL proving an instance works. With O(mode=template) C({instance}) is replaced, for example V(http://127.0.0.1:{instance}/health).
      - With O(mode=host), the host's own URL such as V(http://127.0.0.1:8000/health).
      - With O(mode=members), optional, checked from the balancer host before a member is added; C({server}) is replaced by its address,
        such as V(http://{server}/health).
    type: str
  health_timeout:
    description: Seconds an instance has to become healthy.
    type: float
    default: 30
  health_interval:
    description: Seconds between health checks.
    type: float
    default: 0.5
  health_passes:
    description: Consecutive passing checks needed.
    type: int
    default: 2
  lb_type:
    description: The load balancer whose upstream file is managed; V(none) manages no balancer.
    type: str
    choices: [nginx, haproxy, none]
    default: nginx
  lb_upstream_file:
    description:
      - The file with the upstream (nginx C(upstream NAME {...})) or backend (HAProxy C(backend NAME)) section, included by the main
        configuration. Owned by this module.
    type: path
  lb_name:
    description: Name of the nginx upstream or HAProxy backend.
    type: str
  lb_server:
    description: Address of an instance in the balancer; C({instance}) is replaced.
    type: str
    default: "127.0.0.1:{instance}"
  lb_check_command:
    description: Configuration test run after writing the upstream file (argv); default C(nginx -t) or C(haproxy -c -f /etc/haproxy/haproxy.cfg).
    type: list
    elements: str
  lb_reload_command:
    description: Reload of the balancer (argv); default C(systemctl reload nginx) or C(systemctl reload haproxy).
    type: list
    elements: str
  drain:
    description: Seconds between taking an instance out of the balancer and stopping it.
    type: float
    default: 2
  min_instances:
    description: Never fewer instances than this.
    type: int
    default: 1
  max_instances:
    description: Never more instances than this.
    type: int
    default: 16
notes:
  - O(mode=template) and O(mode=host) run on the host of the service (need C(systemctl); become root); O(mode=members) runs on the
    load balancer host.
  - Supports check mode (lists what would start and stop) and C(--diff) (instances and balancer members before and after).
"""

EXAMPLES = r"""
- name: Three backend instances behind nginx
  become: true
  sre.runbooks.scale_service:
    template: residency-scheduler-backend
    instances: [8001, 8002, 8003]
    health_url: "http://127.0.0.1:{instance}/health"
    lb_upstream_file: /etc/nginx/residency-scheduler-upstream.conf
    lb_name: scheduler_backend

- name: Back to two after the incident
  become: true
  sre.runbooks.scale_service:
    template: residency-scheduler-backend
    instances: [8001, 8002]
    health_url: "http://127.0.0.1:{instance}/health"
    lb_upstream_file: /etc/nginx/residency-scheduler-upstream.conf
    lb_name: scheduler_backend
    drain: 10

# Standby hosts of a group: one host at a time; a host that does not become healthy fails and stops the rollout.
- name: Bring the standby backends up behind HAProxy
  hosts: app_standby
  serial: 1
  max_fail_percentage: 0
  gather_facts: false
  become: true
  tasks:
    - name: Start the backend on this standby host, health-gated
      sre.runbooks.scale_service:
        mode: host
        unit: residency-scheduler-backend.service
        health_url: http://127.0.0.1:8000/health

    - name: Add it to HAProxy once the balancer sees it healthy
      sre.runbooks.scale_service:
        mode: members
        members: ["{{ inventory_hostname }}={{ ansible_host }}:8000"]
        health_url: "http://{server}/health"
        lb_type: haproxy
        lb_upstream_file: /etc/haproxy/conf.d/50-scheduler-backend.cfg
        lb_name: scheduler_backend
        lb_check_command: [haproxy, -c, -f, /etc/haproxy/haproxy.cfg, -f, /etc/haproxy/conf.d]
        lb_runtime_socket: /run/haproxy/admin.sock
      delegate_to: "{{ groups['lb'][0] }}"

- name: Take a standby host out again after the incident
  hosts: app3
  gather_facts: false
  become: true
  tasks:
    - name: Out of HAProxy first, drained
      sre.runbooks.scale_service:
        mode: members
        members_state: absent
        members: ["{{ ansible_host }}:8000"]
        lb_type: haproxy
        lb_upstream_file: /etc/haproxy/conf.d/50-scheduler-backend.cfg
        lb_name: scheduler_backend
        lb_runtime_socket: /run/haproxy/admin.sock
        drain: 10
      delegate_to: "{{ groups['lb'][0] }}"

    - name: Then stop it
      sre.runbooks.scale_service:
        mode: host
        unit: residency-scheduler-backend.service
        state: stopped
"""

RETURN = r"""
instances:
  description: Instances running after the run.
  returned: with O(mode=template)
  type: list
  elements: str
instances_before:
  description: Instances running before the run.
  returned: with O(mode=template)
  type: list
  elements: str
members:
  description: Load balancer members after the run.
  returned: with O(mode=template) or O(mode=members)
  type: list
  elements: str
members_before:
  description: Load balancer members before the run.
  returned: with O(mode=template) or O(mode=members)
  type: list
  elements: str
started:
  description: Instances started, health-checked and added to the balancer.
  returned: with O(mode=template)
  type: list
  elements: str
stopped:
  description: Instances taken out of the balancer and stopped.
  returned: with O(mode=template)
  type: list
  elements: str
failed_instance:
  description: The instance that did not become healthy (the rollout stopped there).
  returned: with O(mode=template)
  type: str
unit:
  description: With O(mode=host), O(unit).
  returned: with O(mode=host)
  type: str
active_before:
  description: With O(mode=host), whether the unit was active before the run.
  returned: with O(mode=host)
  type: bool
active:
  description: With O(mode=host), whether the unit is active after the run.
  returned: with O(mode=host)
  type: bool
health:
  description: With O(mode=host), the last health check's answer, such as C(HTTP 200).
  returned: with O(mode=host) and O(state=started)
  type: str
added:
  description: With O(mode=members), addresses added to the balancer.
  returned: with O(mode=members)
  type: list
  elements: str
removed:
  description: With O(mode=members), addresses taken out of the balancer.
  returned: with O(mode=members)
  type: list
  elements: str
steps:
  description: What was done, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._scale_service import HostUnit, Members, Scaler, ScaleError

DEFAULT_CHECK = {"nginx": ["nginx", "-t"], "haproxy": ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"]}


def validate(o: dict) -> str | None:
    """Checks across options; returns an error message naming the option, or None."""
    mode = o["mode"]
    if o["health_passes"] < 1 or o["health_timeout"] <= 0 or o["drain"] < 0:
        return "health_passes / health_timeout / drain: must be positive"
    if mode == "template":
        if not o["template"] or o["instances"] is None:
            return "template / instances: required with mode=template"
        instances = list(dict.fromkeys(str(i).strip() for i in o["instances"]))
        bad = [i for i in instances if not i or any(c in i for c in "@/ \t\n") or i.startswith("-")]
        if bad:
            return f"instances: not usable as systemd instance names: {bad}"
        if "@" in o["template"] or o["template"].endswith(".service"):
            return f"template: give the name without @ and .service, got {o['template']!r}"
        if not o["min_instances"] <= len(instances) <= o["max_instances"]:
            return (f"instances: {len(instances)} instances asked, outside min_instances={o['min_instances']} .. "
                    f"max_instances={o['max_instances']}; nothing was changed")
        if not o["health_url"] or "{instance}" not in o["health_url"]:
            return "health_url: required with mode=template and must contain {instance}"
        o["instances"] = instances
    elif mode == "host":
        if not o["unit"] or o["unit"].endswith("@.service") or o["unit"].startswith("-"):
            return f"unit: a unit name is required with mode=host (a template instance like name@8001.service is fine), got {o['unit']!r}"
        if o["state"] == "started" and not o["health_url"]:
            return "health_url: required with mode=host and state=started (the rollout is health-gated)"
    else:
        if not o["members"]:
            return "members: required with mode=members"
        bad = [m for m in o["members"] if not m.strip() or any(c in m for c in " \t\n;#{}") or ":" not in (m.partition("=")[2] if "=" in m else m)]
        if bad:
            return f"members: expected ADDRESS:PORT or NAME=ADDRESS:PORT, got {bad}"
        if o["lb_type"] == "none":
            return "lb_type: mode=members needs a load balancer (nginx or haproxy)"
        if o["health_url"] and "{server}" not in o["health_url"]:
            return "health_url: with mode=members it must contain {server}"
        if o["min_members"] < 0:
            return "min_members: must not be negative"
    if mode != "host" and o["lb_type"] != "none" and not (o["lb_upstream_file"] and o["lb_name"]):
        return f"lb_upstream_file / lb_name: required with lb_type={o['lb_type']}"
    if o["lb_runtime_socket"] and o["lb_type"] != "haproxy":
        return "lb_runtime_socket: only with lb_type=haproxy"
    return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "mode": {"type": "str", "default": "template", "choices": ["template", "host", "members"]},
            "template": {"type": "str"},
            "instances": {"type": "list", "elements": "str"},
            "unit": {"type": "str"},
            "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
            "members": {"type": "list", "elements": "str"},
            "members_state": {"type": "str", "default": "present", "choices": ["present", "absent", "exact"]},
            "min_members": {"type": "int", "default": 1},
            "enable": {"type": "bool", "default": True},
            "health_url": {"type": "str"},
            "health_timeout": {"type": "float", "default": 30},
            "health_interval": {"type": "float", "default": 0.5},
            "health_passes": {"type": "int", "default": 2, "no_log": False},
            "lb_type": {"type": "str", "default": "nginx", "choices": ["nginx", "haproxy", "none"]},
            "lb_upstream_file": {"type": "path"},
            "lb_name": {"type": "str"},
            "lb_server": {"type": "str", "default": "127.0.0.1:{instance}"},
            "lb_check_command": {"type": "list", "elements": "str"},
            "lb_reload_command": {"type": "list", "elements": "str"},
            "lb_runtime_socket": {"type": "path"},
            "lb_runtime_timeout": {"type": "float", "default": 10},
            "drain": {"type": "float", "default": 2},
            "min_instances": {"type": "int", "default": 1},
            "max_instances": {"type": "int", "default": 16},
        },
        supports_check_mode=True,
    )
    o = dict(module.params)
    problem = validate(o)
    if problem:
        module.fail_json(msg=problem, option=problem.split(":", 1)[0].split(" / ")[0])
    if o["lb_type"] != "none":
        o["lb_check_command"] = o["lb_check_command"] if o["lb_check_command"] is not None else DEFAULT_CHECK[o["lb_type"]]
        o["lb_reload_command"] = o["lb_reload_command"] or ["systemctl", "reload", o["lb_type"]]

    def runner(argv):
        return module.run_command(argv, check_rc=False)

    worker = {"template": Scaler, "host": HostUnit, "members": Members}[o["mode"]](o, runner, module.check_mode)
    try:
        result = worker.apply() if o["mode"] != "template" else worker.scale()
    except ScaleError as exc:
        partial = dict(exc.partial)
        if not module._diff:  # pylint: disable=protected-access
            partial.pop("diff", None)
        module.fail_json(msg=str(exc), **({"option": exc.option} if exc.option else {}), **partial)
    except OSError as exc:
        module.fail_json(msg=f"lb_upstream_file: cannot write {o['lb_upstream_file']}: {exc}", option="lb_upstream_file")
    if not module._diff:  # pylint: disable=protected-access
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
