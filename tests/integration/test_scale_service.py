"""scale_service on a real systemd host (systemd-nspawn, lab/hosts.py) with a real nginx in front, driven by Ansible over SSH."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests

from .conftest import free_port

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


def _load_hosts():
    spec = importlib.util.spec_from_file_location("lab_hosts_for_scale", REPO_ROOT / "lab" / "hosts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


hosts = _load_hosts()


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
