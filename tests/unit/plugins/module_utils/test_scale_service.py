"""_scale_service pure parts: upstream files, member entries, HAProxy's Runtime API answer, option checks."""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _scale_service as sc
from ansible_collections.sre.runbooks.plugins.modules.scale_service import validate

STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change \
srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port \
srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 web 1 app1 127.0.0.1 2 0 1 1 12 6 3 4 6 0 0 0 - 8001 - 0 0 - - 0
3 web 2 sb1 127.0.0.1 0 0 1 1 1 7 2 0 6 0 0 0 - 8002 - 0 0 - - 0
4 other 1 x 10.0.0.9 2 0 1 1 1 6 3 4 6 0 0 0 - 9000 - 0 0 - - 0
"""


def test_haproxy_backend_round_trip_keeps_names():
    text = sc.render_upstream("haproxy", "web", [("app1", "127.0.0.1:8001"), "127.0.0.1:8002"], "managed")
    assert "    server app1 127.0.0.1:8001 check\n" in text and "    server srv_127_0_0_1_8002 127.0.0.1:8002 check\n" in text
    assert sc.parse_entries("haproxy", text) == [("app1", "127.0.0.1:8001"), ("srv_127_0_0_1_8002", "127.0.0.1:8002")]


def test_nginx_empty_upstream_stays_valid_and_lists_no_member():
    text = sc.render_upstream("nginx", "web", [], "managed")
    assert "server 127.0.0.1:9 down;" in text and sc.parse_members("nginx", text) == []


@pytest.mark.parametrize("entry, expected", [("app3=10.0.0.13:8000", ("app3", "10.0.0.13:8000")),
                                             ("10.0.0.13:8000", ("srv_10_0_0_13_8000", "10.0.0.13:8000"))])
def test_parse_entry(entry, expected):
    assert sc.parse_entry(entry) == expected


def test_haproxy_runtime_servers_reads_one_backend():
    path = Path(tempfile.mkdtemp(prefix="hap-")) / "admin.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    asked = []

    def answer():
        conn, _addr = server.accept()
        asked.append(conn.recv(1024).decode())
        conn.sendall(STATE.encode())
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        servers = sc.haproxy_runtime_servers(str(path), "web")
    finally:
        thread.join()
        server.close()
    assert asked == ["show servers state web\n"]
    assert {addr: row["srv_op_state"] for addr, row in servers.items()} == {"127.0.0.1:8001": "2", "127.0.0.1:8002": "0"}


def base(**overrides):
    options = {"mode": "members", "template": None, "instances": None, "unit": None, "state": "started", "members": ["127.0.0.1:1"],
               "members_state": "present", "min_members": 1, "health_url": None, "health_timeout": 5, "health_passes": 2, "drain": 0,
               "lb_type": "haproxy", "lb_upstream_file": "/tmp/x.cfg", "lb_name": "web", "lb_runtime_socket": None,
               "min_instances": 1, "max_instances": 4}
    options.update(overrides)
    return options


@pytest.mark.parametrize("overrides, message", [
    ({"members": None}, "members: required"),
    ({"members": ["no-port"]}, "members: expected"),
    ({"health_url": "http://x/"}, "health_url: with mode=members"),
    ({"lb_type": "none"}, "lb_type:"),
    ({"lb_name": None}, "lb_upstream_file / lb_name:"),
    ({"lb_type": "nginx", "lb_runtime_socket": "/run/x.sock"}, "lb_runtime_socket:"),
    ({"mode": "host", "unit": "web@.service"}, "unit:"),
    ({"mode": "host", "unit": "web.service"}, "health_url: required with mode=host"),
    ({"mode": "template"}, "template / instances:"),
])
def test_validate_names_the_option(overrides, message):
    assert (validate(base(**overrides)) or "").startswith(message)


def test_validate_accepts_a_standby_host_and_a_member():
    assert validate(base(mode="host", unit="web.service", health_url="http://127.0.0.1:8000/")) is None
    assert validate(base(members=["app3=10.0.0.13:8000"], health_url="http://{server}/health", lb_runtime_socket="/run/a.sock")) is None
