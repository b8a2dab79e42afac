"""A scale-out killed part-way (HighCPUUsage's "scale horizontally" step: sre.runbooks.scale_service, playbook
../playbooks/scale_out.yml) on worker1, where the test runs a template unit behind nginx. The run and its module in
the host are SIGKILLed once the second instance has started and before it is healthy (instances take a second to
come up). nginx's upstream is a whole file naming only healthy, running instances, nginx's configuration tests
clean and it keeps serving; a rerun completes the scale-out, every instance in nginx and serving."""

from __future__ import annotations

import re
from collections import Counter

import requests

from conftest import REPO, free_port, in_host, interrupt, wait_until

HOST = "worker1"
TEMPLATE = "faults-web"
UPSTREAM = "/etc/nginx/faults-web-upstream.conf"
PLAYBOOK = str(REPO / "molecule" / "faults" / "playbooks" / "scale_out.yml")
# An instance answers its port only after a second (a real service loading), so the kill lands between its start and
# its health check passing.
WEB = r'''
import http.server, sys, time
port = int(sys.argv[1])
time.sleep(1.5)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"instance {port}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''
UNIT = """[Unit]
Description=Fault suite web instance %i

[Service]
ExecStart=/usr/bin/python3 /usr/local/bin/faults-web.py %i
"""


def write(path: str, text: str) -> None:
    in_host(HOST, f"cat > {path} <<'FAULTS_EOF'\n{text}\nFAULTS_EOF")


def members() -> list[str]:
    text = in_host(HOST, f"cat {UPSTREAM}").stdout
    assert re.search(r"upstream faults-web \{.*\}\s*$", text, re.S), f"upstream file not whole:\n{text}"
    return re.findall(r"server 127\.0\.0\.1:(\d+)", text)


def healthy(port: str) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def served(lb: int, n: int = 12) -> Counter:
    return Counter(requests.get(f"http://127.0.0.1:{lb}/", timeout=5).text.split()[1] for _unused in range(n))


def test_interrupted_scale(runs):
    ports = sorted(str(free_port()) for _unused in range(3))
    lb = free_port()
    write("/usr/local/bin/faults-web.py", WEB)
    write(f"/etc/systemd/system/{TEMPLATE}@.service", UNIT)
    write(UPSTREAM, f"upstream {TEMPLATE} {{\n    server 127.0.0.1:{ports[0]};\n}}")
    write("/etc/nginx/conf.d/faults-web.conf", f"include {UPSTREAM};\nserver {{\n    listen 127.0.0.1:{lb};\n"
                                               f"    location / {{ proxy_pass http://{TEMPLATE}; }}\n}}")
    try:
        in_host(HOST, f"rm -f /etc/nginx/sites-enabled/default && systemctl daemon-reload && systemctl start {TEMPLATE}@{ports[0]} nginx")
        wait_until(lambda: healthy(ports[0]), "the first instance up")
        scale = {"faults_template": TEMPLATE, "faults_upstream": UPSTREAM, "faults_instances": ports}

        background = runs.start(PLAYBOOK, **scale)
        wait_until(lambda: in_host(HOST, f"systemctl is-active {TEMPLATE}@{ports[1]}", check=False).stdout.strip() == "active",
                   "the second instance started", timeout=240, interval=0.05)
        interrupt(background, HOST)
        assert background.wait().proc.returncode != 0

        listed = members()
        assert ports[0] in listed and all(healthy(p) for p in listed), listed  # nobody half-registered
        in_host(HOST, "nginx -t -q")
        assert set(served(lb)) == set(listed)  # the balancer keeps serving its members

        rerun = runs.run(PLAYBOOK, **scale)
        assert rerun.ok, rerun.output[-4000:]
        assert members() == ports and all(healthy(p) for p in ports)
        assert set(served(lb)) == set(ports)
    finally:
        in_host(HOST, f"systemctl stop nginx '{TEMPLATE}@*'; rm -f /etc/nginx/conf.d/faults-web.conf {UPSTREAM} "
                      f"/etc/systemd/system/{TEMPLATE}@.service /usr/local/bin/faults-web.py; "
                      f"rm -rf /etc/systemd/system/multi-user.target.wants/{TEMPLATE}@*; systemctl daemon-reload", check=False)
