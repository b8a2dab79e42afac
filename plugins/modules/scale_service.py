#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: scale_service
short_description: Scale a systemd template service up or down, health-gated, with load-balancer membership
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
    so the balancer keeps serving its previous members.
options:
  template:
    description: The template's name without C(@) and suffix, for example V(residency-scheduler-backend) for C(residency-scheduler-backend@.service).
    type: str
    required: true
  instances:
    description: The instance names that should run, typically ports, such as V([8001, 8002, 8003]).
    type: list
    elements: str
    required: true
  enable:
    description: Enable instances (survive a reboot) as well as start them, and disable them when stopping.
    type: bool
    default: true
  health_url:
    description: URL proving an instance works; C({instance}) is replaced, for example V(http://127.0.0.1:{instance}/health).
    type: str
    required: true
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
  - Runs on the host of the service (needs C(systemctl); become root).
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
"""

RETURN = r"""
instances:
  description: Instances running after the run.
  returned: always
  type: list
  elements: str
instances_before:
  description: Instances running before the run.
  returned: always
  type: list
  elements: str
members:
  description: Load balancer members after the run.
  returned: always
  type: list
  elements: str
members_before:
  description: Load balancer members before the run.
  returned: always
  type: list
  elements: str
started:
  description: Instances started, health-checked and added to the balancer.
  returned: always
  type: list
  elements: str
stopped:
  description: Instances taken out of the balancer and stopped.
  returned: always
  type: list
  elements: str
failed_instance:
  description: The instance that did not become healthy (the rollout stopped there).
  returned: always
  type: str
steps:
  description: What was done, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._scale_service import Scaler, ScaleError

DEFAULT_CHECK = {"nginx": ["nginx", "-t"], "haproxy": ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"]}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "template": {"type": "str", "required": True},
            "instances": {"type": "list", "elements": "str", "required": True},
            "enable": {"type": "bool", "default": True},
            "health_url": {"type": "str", "required": True},
            "health_timeout": {"type": "float", "default": 30},
            "health_interval": {"type": "float", "default": 0.5},
            "health_passes": {"type": "int", "default": 2, "no_log": False},
            "lb_type": {"type": "str", "default": "nginx", "choices": ["nginx", "haproxy", "none"]},
            "lb_upstream_file": {"type": "path"},
            "lb_name": {"type": "str"},
            "lb_server": {"type": "str", "default": "127.0.0.1:{instance}"},
            "lb_check_command": {"type": "list", "elements": "str"},
            "lb_reload_command": {"type": "list", "elements": "str"},
            "drain": {"type": "float", "default": 2},
            "min_instances": {"type": "int", "default": 1},
            "max_instances": {"type": "int", "default": 16},
        },
        required_if=[("lb_type", "nginx", ("lb_upstream_file", "lb_name")), ("lb_type", "haproxy", ("lb_upstream_file", "lb_name"))],
        supports_check_mode=True,
    )
    o = dict(module.params)
    instances = list(dict.fromkeys(str(i).strip() for i in o["instances"]))
    bad = [i for i in instances if not i or any(c in i for c in "@/ \t\n") or i.startswith("-")]
    if bad:
        module.fail_json(msg=f"instances: not usable as systemd instance names: {bad}", option="instances")
    if "@" in o["template"] or o["template"].endswith(".service") or not o["template"]:
        module.fail_json(msg=f"template: give the name without @ and .service, got {o['template']!r}", option="template")
    if not o["min_instances"] <= len(instances) <= o["max_instances"]:
        module.fail_json(msg=f"instances: {len(instances)} instances asked, outside min_instances={o['min_instances']} .. "
                             f"max_instances={o['max_instances']}; nothing was changed", option="instances")
    if "{instance}" not in o["health_url"]:
        module.fail_json(msg="health_url: must contain {instance}", option="health_url")
    if o["health_passes"] < 1 or o["health_timeout"] <= 0 or o["drain"] < 0:
        module.fail_json(msg="health_passes / health_timeout / drain: must be positive", option="health_timeout")
    o["instances"] = instances
    if o["lb_type"] != "none":
        o["lb_check_command"] = o["lb_check_command"] if o["lb_check_command"] is not None else DEFAULT_CHECK[o["lb_type"]]
        o["lb_reload_command"] = o["lb_reload_command"] or ["systemctl", "reload", o["lb_type"]]

    def runner(argv):
        return module.run_command(argv, check_rc=False)

    try:
        result = Scaler(o, runner, module.check_mode).scale()
    except ScaleError as exc:
        module.fail_json(msg=str(exc), **({"option": exc.option} if exc.option else {}), **exc.partial)
    except OSError as exc:
        module.fail_json(msg=f"lb_upstream_file: cannot write {o['lb_upstream_file']}: {exc}", option="lb_upstream_file")
    if not module._diff:  # pylint: disable=protected-access
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
