"""scale_service on a real systemd host (systemd-nspawn, lab/hosts.py) with a real nginx in front, driven by Ansible over SSH."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests

from .conftest import free_port, load_lab_module

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
HOST = f"remed-scale-{os.getpid() % 100000}"
UPSTREAM = "/etc/nginx/web-upstream.conf"
WEB = r'''
import http.server, os, sys
port = int(sys.argv[1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if os.path.exists(f"/srv/web/fail-{port}") else 200
        body = f"instance {port}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''
UNIT = """[Unit]
Description=Test web instance %i

[Service]
ExecStart=/usr/bin/python3 /usr/local/bin/web.py %i

[Install]
WantedBy=multi-user.target
"""


hosts = load_lab_module("hosts.py", "lab_hosts_for_scale")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("lab hosts need root")
    state = tmp_path_factory.mktemp("scale-lab")
    saved = os.environ.get("LAB_STATE_DIR")
    os.environ["LAB_STATE_DIR"] = str(state)
    ports = sorted(free_port() for _unused in range(4))  # instance order is numeric
    lb_port = free_port()
    try:
        hosts.build_base()
        hosts.boot(HOST, ssh_port=free_port(), fresh=True)
        hosts.write_file(HOST, "/usr/local/bin/web.py", WEB)
        hosts.write_file(HOST, "/etc/systemd/system/web@.service", UNIT)
        hosts.write_file(HOST, UPSTREAM, f"upstream web {{\n    server 127.0.0.1:{ports[0]};\n}}\n")
        hosts.write_file(HOST, "/etc/nginx/conf.d/web.conf",
                         f"include {UPSTREAM};\nserver {{\n    listen 127.0.0.1:{lb_port};\n"
                         "    location / { proxy_pass http://web; }\n}\n")
        hosts.run(HOST, "mkdir -p /srv/web && rm -f /etc/nginx/sites-enabled/default && systemctl daemon-reload"
                        f" && systemctl enable --now web@{ports[0]}.service nginx.service")
        inventory = state / "inventory.json"
        inventory.write_text(json.dumps({"all": {"hosts": {HOST: hosts.ansible_host_vars(HOST)}}}))
        yield {"ports": [str(p) for p in ports], "lb": f"http://127.0.0.1:{lb_port}/", "inventory": inventory}
    finally:
        try:
            hosts.stop(HOST)
        finally:
            if saved is None:
                os.environ.pop("LAB_STATE_DIR", None)
            else:
                os.environ["LAB_STATE_DIR"] = saved


def scale(host, instances, check=False, **args):
    module_args = {"template": "web", "instances": instances, "health_url": "http://127.0.0.1:{instance}/",
                   "lb_upstream_file": UPSTREAM, "lb_name": "web", "drain": 0.2, "health_timeout": 5, "health_interval": 0.2}
    module_args.update(args)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"),
               PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    argv = [str(VENV_BIN / "ansible"), "all", "-i", str(host["inventory"]), "-m", "sre.runbooks.scale_service",
            "-a", json.dumps(module_args), "--diff"] + (["--check"] if check else [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env, cwd=REPO_ROOT, check=False)
    match = re.search(r"\| (SUCCESS|CHANGED|FAILED!) => (\{.*\})", proc.stdout, re.S)
    assert match, proc.stdout + proc.stderr
    result = json.loads(match.group(2))
    result["_stdout"] = proc.stdout  # --diff output is printed, not part of the JSON
    return result, match.group(1) == "FAILED!"


def active(port):
    return hosts.run(HOST, f"systemctl is-active web@{port}.service", check=False).stdout.strip()


def upstream():
    return hosts.run(HOST, f"cat {UPSTREAM}").stdout


def served(host, n=12):
    return Counter(requests.get(host["lb"], timeout=5).text.split()[1] for _unused in range(n))


def test_scale_up_health_gated_then_down(host):
    p1, p2, p3, p4 = host["ports"]
    before = upstream()
    preview, failed = scale(host, [p1, p2, p3], check=True)
    assert not failed, preview
    assert preview["changed"] is True and preview["to_start"] == [p2, p3]
    assert active(p2) != "active" and upstream() == before
    assert f"+members: 127.0.0.1:{p1}, 127.0.0.1:{p2}, 127.0.0.1:{p3}" in preview["_stdout"]

    result, failed = scale(host, [p1, p2, p3])
    assert not failed, result
    assert result["started"] == [p2, p3] and result["instances"] == [p1, p2, p3]
    assert result["members"] == [f"127.0.0.1:{p}" for p in (p1, p2, p3)]
    assert set(served(host)) == {p1, p2, p3}  # nginx really balances over all three
    assert hosts.run(HOST, f"systemctl is-enabled web@{p3}.service").stdout.strip() == "enabled"

    again, failed = scale(host, [p1, p2, p3])
    assert not failed and again["changed"] is False

    # p4 never gets healthy: stopped, not in the balancer, rollout stops, the three keep serving.
    hosts.run(HOST, f"touch /srv/web/fail-{p4}")
    failed_run, failed = scale(host, [p1, p2, p3, p4], health_timeout=1.5)
    assert failed and failed_run["failed_instance"] == p4 and failed_run["option"] == "health_url"
    assert active(p4) != "active" and f":{p4}" not in upstream()
    assert set(served(host)) == {p1, p2, p3}

    # A balancer that rejects the new file: previous file back, instance stopped.
    hosts.run(HOST, f"rm -f /srv/web/fail-{p4}")
    rejected, failed = scale(host, [p1, p2, p3, p4], lb_check_command=["false"])
    assert failed and rejected["option"] == "lb_check_command"
    assert f":{p4}" not in upstream() and active(p4) != "active"

    down, failed = scale(host, [p1])
    assert not failed and down["stopped"] == [p3, p2] and down["members"] == [f"127.0.0.1:{p1}"]
    assert active(p2) != "active" and active(p3) != "active"
    assert set(served(host, 4)) == {p1}


def test_guard_rails(host):
    p1 = host["ports"][0]
    result, failed = scale(host, [], check=True)
    assert failed and result["msg"].startswith("instances: 0 instances asked, outside min_instances=1")
    result, failed = scale(host, [p1, "a b"], check=True)
    assert failed and result["msg"].startswith("instances: not usable")
    result, failed = scale(host, [p1], check=True, template="web@")
    assert failed and result["msg"].startswith("template:")


# -- standby hosts of a group behind a real HAProxy ---------------------------------------------------------------------------
# Two more systemd hosts (the standby group) each with a plain web.service on its own port; HAProxy runs on the machine, the load
# balancer host (its binary needs libraries the lab's base image does not carry), in master-worker mode with a Runtime API socket.

STANDBY = [f"remed-sb{i}-{os.getpid() % 100000}" for i in (1, 2)]
SCALE_OUT = """
- name: Scale out onto the standby hosts, one at a time
  hosts: standby
  serial: 1
  max_fail_percentage: 0
  gather_facts: false
  tasks:
    - name: Start the web service on this standby host, health-gated
      sre.runbooks.scale_service:
        mode: host
        unit: web.service
        health_url: "http://127.0.0.1:{{ web_port }}/"
        health_timeout: "{{ health_timeout | default(5) }}"
        health_interval: 0.2

    - name: Add it to HAProxy once the balancer sees it healthy
      sre.runbooks.scale_service:
        mode: members
        members: ["{{ inventory_hostname }}=127.0.0.1:{{ web_port }}"]
        health_url: "http://{server}/"
        health_interval: 0.2
        lb_type: haproxy
        lb_upstream_file: "{{ lb_dir }}/web-backend.cfg"
        lb_name: web
        lb_check_command: "{{ lb_check }}"
        lb_reload_command: "{{ lb_reload }}"
        lb_runtime_socket: "{{ lb_dir }}/admin.sock"
      delegate_to: lb
"""
SCALE_IN = """
- name: Take standby hosts out again
  hosts: standby
  serial: 1
  gather_facts: false
  tasks:
    - name: Out of HAProxy first, drained
      sre.runbooks.scale_service:
        mode: members
        members_state: absent
        members: ["127.0.0.1:{{ web_port }}"]
        lb_type: haproxy
        lb_upstream_file: "{{ lb_dir }}/web-backend.cfg"
        lb_name: web
        lb_check_command: "{{ lb_check }}"
        lb_reload_command: "{{ lb_reload }}"
        lb_runtime_socket: "{{ lb_dir }}/admin.sock"
        drain: 0.2
      delegate_to: lb

    - name: Then stop it
      sre.runbooks.scale_service:
        mode: host
        unit: web.service
        state: stopped
"""


class LocalWeb:
    """The member the balancer already has (an app host that is not a standby): a local HTTP server saying who it is."""

    def __init__(self, port):
        import http.server  # pylint: disable=import-outside-toplevel
        import threading  # pylint: disable=import-outside-toplevel

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                body = f"instance {port}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def standby(host, tmp_path_factory):
    lb_dir = tmp_path_factory.mktemp("haproxy")
    base_port, lb_port = free_port(), free_port()
    ports = {name: free_port() for name in STANDBY}
    base = LocalWeb(base_port)
    (lb_dir / "haproxy.cfg").write_text(
        f"global\n    stats socket {lb_dir}/admin.sock mode 600 level admin\n\n"
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\n"
        f"frontend www\n    bind 127.0.0.1:{lb_port}\n    default_backend web\n")
    (lb_dir / "web-backend.cfg").write_text(f"backend web\n    server app1 127.0.0.1:{base_port} check\n")
    files = ["-f", str(lb_dir / "haproxy.cfg"), "-f", str(lb_dir / "web-backend.cfg")]
    subprocess.run(["haproxy", "-W", "-D", "-p", str(lb_dir / "haproxy.pid"), *files], check=True)
    master = int((lb_dir / "haproxy.pid").read_text().split()[0])
    try:
        hosts.boot_many([{"name": name, "ssh_port": free_port(), "fresh": True} for name in STANDBY])
        for name, port in ports.items():
            hosts.write_file(name, "/usr/local/bin/web.py", WEB)
            hosts.write_file(name, "/etc/systemd/system/web.service", UNIT.replace("%i", str(port)))
            hosts.run(name, "mkdir -p /srv/web && systemctl daemon-reload")
        inventory = lb_dir / "inventory.json"
        inventory.write_text(json.dumps({"all": {"children": {
            "standby": {"hosts": {name: {**hosts.ansible_host_vars(name), "web_port": port} for name, port in ports.items()}},
            "balancers": {"hosts": {"lb": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
        yield {"lb_dir": lb_dir, "inventory": inventory, "ports": ports, "base": str(base_port), "master": master,
               "lb": f"http://127.0.0.1:{lb_port}/", "check": ["haproxy", "-c", "-q", *files], "reload": ["kill", "-USR2", str(master)]}
    finally:
        try:
            for name in STANDBY:
                hosts.stop(name)
        finally:
            os.kill(master, 15)  # the HAProxy master this fixture started (it takes its workers along)
            base.httpd.shutdown()


def playbook(sb, text, *flags, **extra):
    path = sb["lb_dir"] / "play.yml"
    path.write_text(text)
    variables = {"lb_dir": str(sb["lb_dir"]), "lb_check": sb["check"], "lb_reload": sb["reload"], **extra}
    (sb["lb_dir"] / "extra.json").write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"), PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(sb["inventory"]), str(path), "-e", f"@{sb['lb_dir']}/extra.json",
                           "--diff", *flags], capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT, check=False)
    recap = {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
             for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", proc.stdout, re.M)}
    return proc, recap


def runtime(sb):
    """The running HAProxy's members of backend web: address → operational state (2 = up)."""
    from ansible_collections.sre.runbooks.plugins.module_utils._scale_service import haproxy_runtime_servers  # pylint: disable=import-outside-toplevel
    return {addr: row["srv_op_state"] for addr, row in haproxy_runtime_servers(str(sb["lb_dir"] / "admin.sock"), "web").items()}


def web_active(name):
    return hosts.run(name, "systemctl is-active web.service", check=False).stdout.strip()


def through_lb(sb, n=18):
    return Counter(requests.get(sb["lb"], timeout=5).text.split()[1] for _unused in range(n))


def test_standby_hosts_health_gated_behind_haproxy(standby):
    sb = standby
    s1, s2 = STANDBY
    p1, p2 = (str(sb["ports"][name]) for name in STANDBY)
    backend_before = (sb["lb_dir"] / "web-backend.cfg").read_text()
    assert runtime(sb) == {f"127.0.0.1:{sb['base']}": "2"} and set(through_lb(sb, 4)) == {sb["base"]}

    proc, recap = playbook(sb, SCALE_OUT, "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap[s1]["changed"] == 2 and recap[s2]["changed"] == 2  # unit and membership, for each host
    assert web_active(s1) != "active" and (sb["lb_dir"] / "web-backend.cfg").read_text() == backend_before
    assert f"+members: 127.0.0.1:{sb['base']}, 127.0.0.1:{p1}" in proc.stdout and "+web.service: active, healthy" in proc.stdout

    # The first standby never gets healthy: stopped again, never in HAProxy, and the second is not even started.
    hosts.run(s1, f"touch /srv/web/fail-{p1}")
    proc, recap = playbook(sb, SCALE_OUT, health_timeout=1.5)
    assert proc.returncode != 0 and recap[s1]["failed"] == 1 and s2 not in recap, proc.stdout[-3000:]
    assert web_active(s1) != "active" and web_active(s2) != "active"
    assert runtime(sb) == {f"127.0.0.1:{sb['base']}": "2"} and set(through_lb(sb, 4)) == {sb["base"]}

    hosts.run(s1, f"rm -f /srv/web/fail-{p1}")
    proc, recap = playbook(sb, SCALE_OUT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert web_active(s1) == "active" and web_active(s2) == "active"
    assert runtime(sb) == {f"127.0.0.1:{sb['base']}": "2", f"127.0.0.1:{p1}": "2", f"127.0.0.1:{p2}": "2"}
    backend = (sb["lb_dir"] / "web-backend.cfg").read_text()
    assert f"server {s1} 127.0.0.1:{p1} check" in backend and "server app1 " in backend  # the existing member kept its name
    assert set(through_lb(sb)) == {sb["base"], p1, p2}  # HAProxy really sends traffic to the new instances

    proc, recap = playbook(sb, SCALE_OUT)
    assert proc.returncode == 0 and recap[s1]["changed"] == 0 and recap[s2]["changed"] == 0, proc.stdout[-3000:]

    proc, recap = playbook(sb, SCALE_IN, "--limit", s2)
    assert proc.returncode == 0 and recap[s2]["changed"] == 2, proc.stdout[-3000:]
    assert web_active(s2) != "active" and f"127.0.0.1:{p2}" not in runtime(sb)
    assert f":{p2}" not in (sb["lb_dir"] / "web-backend.cfg").read_text()
    assert set(through_lb(sb)) == {sb["base"], p1}


def test_members_guard_rails_leave_haproxy_alone(monkeypatch, standby):
    from ansible_collections.sre.runbooks.plugins.modules import scale_service  # pylint: disable=import-outside-toplevel
    from tests.unit.plugins.modules.utils import run_module  # pylint: disable=import-outside-toplevel
    sb = standby
    common = {"mode": "members", "lb_type": "haproxy", "lb_upstream_file": str(sb["lb_dir"] / "web-backend.cfg"), "lb_name": "web",
              "lb_check_command": sb["check"], "lb_reload_command": sb["reload"], "lb_runtime_socket": str(sb["lb_dir"] / "admin.sock"),
              "health_timeout": 1, "health_interval": 0.2, "_ansible_diff": True}
    before, members = (sb["lb_dir"] / "web-backend.cfg").read_text(), runtime(sb)
    everyone = list(members)
    result, failed = run_module(monkeypatch, scale_service.main, {**common, "members": everyone, "members_state": "absent"})
    assert failed and result["option"] == "min_members" and result["msg"].startswith("members: 0 members would be left")
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    result, failed = run_module(monkeypatch, scale_service.main, {**common, "members": [dead], "health_url": "http://{server}/"})
    assert failed and result["option"] == "health_url" and result["changed"] is False
    result, failed = run_module(monkeypatch, scale_service.main, {**common, "members": ["bad;name=127.0.0.1:1"]})
    assert failed and result["msg"].startswith("members: expected")
    # A file the balancer's configuration test rejects: the previous one is put back, nothing reloaded.
    result, failed = run_module(monkeypatch, scale_service.main, {**common, "members": [dead], "lb_check_command": ["false"]})
    assert failed and result["option"] == "lb_check_command"
    assert (sb["lb_dir"] / "web-backend.cfg").read_text() == before and runtime(sb) == members
