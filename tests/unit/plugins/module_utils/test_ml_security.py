"""The Heart Disease security findings: exposed secrets by key id, networks to block, and the denylist-only guard."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _ip_blocklist
from ansible_collections.sre.runbooks.plugins.module_utils._ml_security import exposed_secrets, suspicious_networks

PARTNER = "hdk_01ea7402" + "a" * 28
INTERNAL = "hdk_ef9d70cc" + "b" * 28
SECRET = "s" * 48
AUTH = {"secret_key": SECRET, "api_keys": [INTERNAL, PARTNER]}


def slurped(path: str, text: str) -> dict:
    return {"source": path, "content": base64.b64encode(text.encode()).decode(), "encoding": "base64"}


def test_exposed_key_is_named_by_id_and_position_never_by_value():
    found = exposed_secrets(AUTH, [slurped("/opt/hd/public/leaked.txt", f"HEART_API_KEY={PARTNER}\n"),
                                   slurped("/opt/hd/public/index.html", "<html>hdk_ef9d70cc only the id</html>")])
    assert found["exposed_keys"] == [{"index": 1, "key_id": "hdk_01ea7402", "files": ["/opt/hd/public/leaked.txt"]}]
    assert found["files"] == ["/opt/hd/public/leaked.txt"] and found["exposed"] is True
    assert PARTNER not in repr(found) and found["jwt_secret_files"] == []


def test_jwt_secret_exposed_and_nothing_found():
    assert exposed_secrets(AUTH, [slurped("/p/a", f"secret={SECRET}")])["jwt_secret_files"] == ["/p/a"]
    nothing = {"exposed_keys": [], "jwt_secret_files": [], "files": [], "exposed": False}
    assert exposed_secrets(AUTH, [slurped("/p/a", "nothing")]) == nothing
    with pytest.raises(ValueError, match="api.auth"):
        exposed_secrets(["not", "a", "dict"], [])


def test_networks_from_failures_and_leaked_key_use():
    failures = [{"key": f"127.66.6.{i}", "count": 2} for i in range(10, 13)] + [{"key": "10.1.2.3", "count": 1}]
    uses = [{"key": "127.66.6.20", "count": 4}, {"key": "198.51.100.7", "count": 1}]
    nets = suspicious_networks(failures, uses)
    assert [n["network"] for n in nets] == ["127.66.6.0/24", "198.51.100.0/24"]
    assert nets[0]["failures"] == 6 and nets[0]["leaked_key_uses"] == 4 and len(nets[0]["addresses"]) == 4
    assert all(not n["trusted"] for n in nets)  # 10.1.2.0/24: one failure, no leaked use: not suspicious


def test_trusted_networks_are_marked_not_dropped():
    nets = suspicious_networks({"198.51.100.7": 50}, None, trusted=["198.51.100.0/25"])
    assert nets[0]["trusted"] == ["198.51.100.0/25"]


def test_denylist_only_allows_other_loopback_networks_but_never_127_0_0_1():
    nets = _ip_blocklist.normalise(["127.66.6.0/24"])
    with pytest.raises(_ip_blocklist.BlocklistError, match="protected network 127.0.0.0/8"):
        _ip_blocklist.check_protected(nets, [])
    _ip_blocklist.check_protected(nets, [], _ip_blocklist.DENYLIST_ONLY_PROTECTED)
    with pytest.raises(_ip_blocklist.BlocklistError, match="127.0.0.1"):
        _ip_blocklist.check_protected(_ip_blocklist.normalise(["127.0.0.0/16"]), [], _ip_blocklist.DENYLIST_ONLY_PROTECTED)
