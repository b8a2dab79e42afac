"""ip_blocklist with real nftables inside a network namespace the test creates (ip netns add), traffic checked for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from ansible_collections.sre.runbooks.plugins.modules import ip_blocklist
from tests.unit.plugins.modules.utils import run_module

from .conftest import wait_until

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]


# Two namespaces of the test's own joined by a veth pair: the server in one, the clients (two addresses of each family) in the
# other. 10.99.0.0/24 and fd00:99::/64 exist only on that link; neither namespace has a route anywhere else.
SERVER = "10.99.0.1"
SERVER6 = "fd00:99::1"
PORT = 8080
CONNECT = ("import socket, sys\n"
           "family = socket.AF_INET6 if ':' in sys.argv[2] else socket.AF_INET\n"
           "s = socket.socket(family); s.settimeout(1); s.bind((sys.argv[1], 0))\n"
           "try:\n    s.connect((sys.argv[2], int(sys.argv[3]))); print('open')\n"
           "except OSError as exc:\n    print(type(exc).__name__)\n")
SERVE = ("import socket\n"
         "s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
         "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('::', %d)); s.listen(64)\n"
         "while True:\n    c, _a = s.accept(); c.close()\n" % PORT)


def sh(*argv, check=True):
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


@pytest.fixture
def netns():
    """Yields the server's namespace (where the blocklist goes); the clients live in its sibling ``<name>-c``."""
    if not shutil.which("nft"):
        pytest.fail("nft not installed: apt-get install nftables (requirements/debian.txt)")
    name = f"remed-bl-{os.getpid()}"
    client = f"{name}-c"
    server = None
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "netns", "add", client)
        sh("ip", "-n", name, "link", "add", "bl0", "type", "veth", "peer", "name", "bl1", "netns", client)
        sh("ip", "-n", name, "addr", "add", f"{SERVER}/24", "dev", "bl0")
        sh("ip", "-n", name, "addr", "add", f"{SERVER6}/64", "dev", "bl0", "nodad")
        for addr in ("10.99.0.2/24", "10.99.0.3/24"):
            sh("ip", "-n", client, "addr", "add", addr, "dev", "bl1")
        for addr in ("fd00:99::2/64", "fd00:99::3/64"):
            sh("ip", "-n", client, "addr", "add", addr, "dev", "bl1", "nodad")
        for ns, dev in ((name, "bl0"), (client, "bl1")):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVE],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: connect(name, "10.99.0.3") == "open" and connect(name, "fd00:99::3", SERVER6) == "open",
                   what="test server listening on both families")
        yield name
    finally:
        if server is not None:
            server.kill()
            server.wait()
        sh("ip", "netns", "del", client, check=False)  # the veth pair goes with it
        sh("ip", "netns", "del", name, check=False)


def connect(ns, source, target=SERVER):
    """Connect from the client namespace of ``ns``: 'open', 'TimeoutError' (dropped) or 'ConnectionRefusedError' (rejected)."""
    return sh("ip", "netns", "exec", f"{ns}-c", sys.executable, "-c", CONNECT, source, target, str(PORT)).stdout.strip()


def ruleset(ns):
    """The namespace's whole ruleset, without the expiry countdowns (which change every millisecond)."""
    return re.sub(r" expires \S+", "", sh("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout)


def block(monkeypatch, ns, check=False, **args):
    full = {"netns": ns, "verdict": "reject", "_ansible_check_mode": check, "_ansible_diff": True}
    full.update(args)
    return run_module(monkeypatch, ip_blocklist.main, full)


def test_block_check_mode_idempotence_and_unblock(monkeypatch, netns):
    preview, failed = block(monkeypatch, netns, check=True, addresses=["10.99.0.2", "fd00:99::/64"], timeout="1h")
    assert not failed, preview
    assert preview["changed"] is True and preview["added"] == ["10.99.0.2", "fd00:99::/64"]
    assert "sre_blocklist" not in ruleset(netns)
    assert preview["diff"] == {"before": "", "after": "10.99.0.2\nfd00:99::/64\n"}

    result, failed = block(monkeypatch, netns, addresses=["10.99.0.2", "fd00:99::/64"], timeout="1h")
    assert not failed, result
    assert result["created_table"] is True and result["elements"]["10.99.0.2"]["timeout"] == 3600
    assert 3590 <= result["elements"]["10.99.0.2"]["expires"] <= 3600
    assert connect(netns, "10.99.0.2") == "ConnectionRefusedError"  # blocked, for real: rejected
    assert connect(netns, "10.99.0.3") == "open"                    # a neighbour is not
    # The whole IPv6 /64 is blocked. Its neighbour advertisements are too, so the reject is delivered only while the
    # neighbour entry is still cached (refused), else never (silence): either way, not open.
    assert connect(netns, "fd00:99::3", SERVER6) in ("TimeoutError", "ConnectionRefusedError")
    assert "ip saddr @blocked_v4 reject" in ruleset(netns)

    again, failed = block(monkeypatch, netns, addresses=["10.99.0.2", "fd00:99::/64"], timeout="1h")
    assert not failed and again["changed"] is False and again["commands"] == []
    refreshed, failed = block(monkeypatch, netns, addresses=["10.99.0.2"], timeout="2h", refresh=True)
    assert not failed and refreshed["refreshed"] == ["10.99.0.2"] and refreshed["elements"]["10.99.0.2"]["timeout"] == 7200

    rules_before = ruleset(netns)
    preview, failed = block(monkeypatch, netns, check=True, addresses=["10.99.0.2"], state="absent")
    assert not failed and preview["removed"] == ["10.99.0.2"] and ruleset(netns) == rules_before
    removed, failed = block(monkeypatch, netns, addresses=["10.99.0.2"], state="absent")
    assert not failed and removed["removed"] == ["10.99.0.2"] and "10.99.0.2" not in removed["elements"]
    assert connect(netns, "10.99.0.2") == "open"
    again, failed = block(monkeypatch, netns, addresses=["10.99.0.2"], state="absent")
    assert not failed and again["changed"] is False


def test_drop_silences_blocked_v4_and_v6_addresses_only(monkeypatch, netns):
    addresses = ["10.99.0.2", "fd00:99::2"]
    result, failed = block(monkeypatch, netns, addresses=addresses, verdict="drop", timeout="10m")
    assert not failed and result["added"] == addresses, result
    assert connect(netns, "10.99.0.2") == "TimeoutError"               # dropped: no answer at all
    assert connect(netns, "fd00:99::2", SERVER6) == "TimeoutError"
    assert connect(netns, "10.99.0.3") == "open" and connect(netns, "fd00:99::3", SERVER6) == "open"  # neighbours pass
    rules = ruleset(netns)
    assert "ip saddr @blocked_v4 drop" in rules and "ip6 saddr @blocked_v6 drop" in rules
    again, failed = block(monkeypatch, netns, addresses=addresses, verdict="drop", timeout="10m")
    assert not failed and again["changed"] is False and again["commands"] == [] and ruleset(netns) == rules


def test_block_expires_by_itself(monkeypatch, netns):
    result, failed = block(monkeypatch, netns, addresses=["10.99.0.2", "fd00:99::2"], timeout="4s", verdict="drop")
    assert not failed and connect(netns, "10.99.0.2") == "TimeoutError"
    assert connect(netns, "fd00:99::2", SERVER6) == "TimeoutError"
    wait_until(lambda: connect(netns, "10.99.0.2") == "open" and connect(netns, "fd00:99::2", SERVER6) == "open",
               timeout=10, what="blocks expired")
    listed, failed = block(monkeypatch, netns, check=True, addresses=["10.99.0.2", "fd00:99::2"], timeout="1h")
    assert listed["added"] == ["10.99.0.2", "fd00:99::2"] and listed["elements"] == {}  # gone from both sets


def test_guard_rails_and_a_failing_batch_change_nothing(monkeypatch, netns):
    block(monkeypatch, netns, addresses=["10.99.0.2"])
    rules = ruleset(netns)
    for addresses, message in ((["127.0.0.1"], "addresses: 127.0.0.1 overlaps the protected network 127.0.0.0/8"),
                               (["10.99.0.0/16"], "addresses: 10.99.0.0/16 overlaps the protected network 10.99.0.0/24"),
                               (["not-an-ip"], "addresses: 'not-an-ip' is not an IP address")):
        result, failed = block(monkeypatch, netns, addresses=addresses, protect=["10.99.0.0/24"] if "16" in addresses[0] else [])
        assert failed and result["msg"].startswith(message), result
    result, failed = block(monkeypatch, netns, addresses=["192.0.2.1", "192.0.2.2"], max_addresses=1)
    assert failed and result["msg"].startswith("max_addresses:")
    # 10.99.0.0/24 overlaps the blocked 10.99.0.2 in an interval set: nft rejects the batch; the new 192.0.2.9 is not half-added.
    result, failed = block(monkeypatch, netns, addresses=["192.0.2.9", "10.99.0.0/24"])
    assert failed and "nft -f - failed" in result["msg"]
    assert ruleset(netns) == rules


def test_app_denylist(monkeypatch, tmp_path):
    denylist = tmp_path / "denylist.json"
    denylist.write_text(json.dumps({"blocked": [{"address": "192.0.2.50", "expires": "2000-01-01T00:00:00+00:00"}]}))
    marker = tmp_path / "reloaded"
    args = {"nftables": False, "denylist_file": str(denylist), "denylist_reload_command": ["touch", str(marker)], "reason": "INC-42"}
    preview, failed = run_module(monkeypatch, ip_blocklist.main, {"addresses": ["198.51.100.0/24"], "_ansible_check_mode": True, **args})
    assert not failed and preview["changed"] is True and not marker.exists()
    result, failed = run_module(monkeypatch, ip_blocklist.main, {"addresses": ["198.51.100.0/24"], **args})
    assert not failed and result["denylist"] == ["198.51.100.0/24"] and marker.exists()  # the expired entry was pruned
    entry = json.loads(denylist.read_text())["blocked"][0]
    assert entry["reason"] == "INC-42" and entry["expires"] > entry["added"]
    marker.unlink()
    again, failed = run_module(monkeypatch, ip_blocklist.main, {"addresses": ["198.51.100.0/24"], **args})
    assert not failed and again["changed"] is False and not marker.exists()
