"""cache_stats against a real redis-server started by the test on a free loopback port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._cache_stats import collect
from ansible_collections.sre.runbooks.plugins.module_utils._redis import RedisClient
from ansible_collections.sre.runbooks.plugins.modules import cache_stats
from tests.unit.plugins.modules.utils import run_module

from ._redis import RedisServer, redis_server  # noqa: F401  pylint: disable=unused-import
from .conftest import free_port

pytestmark = pytest.mark.integration


def load_keys(server, sessions=40, schedules=30, plain=5):
    """``session:*`` with 300 to 600 s TTLs, ``schedule:*`` without TTL, and a few keys without a prefix."""
    commands = [["SET", f"session:{i}", "s" * 64, "EX", str(300 + i)] for i in range(sessions)]
    commands += [["SET", f"schedule:2026:{i}", "x" * 512] for i in range(schedules)]
    commands += [["SET", f"plain{i}", "p"] for i in range(plain)]
    server.pipe(commands)


def traffic(server, hits, misses):
    server.pipe([["GET", "session:0"]] * hits + [["GET", "missing:key"]] * misses)


def run(monkeypatch, server, **args):
    args.setdefault("port", server.port)
    return run_module(monkeypatch, cache_stats.main, args)


def test_interval_hit_rate_counts_only_traffic_during_the_interval(redis_server):
    load_keys(redis_server)
    traffic(redis_server, hits=90, misses=10)  # before: only in the since-start ratio
    with RedisClient(port=redis_server.port) as client:
        result = collect(client, interval=0.2, sample_size=500, sleep=lambda seconds: traffic(redis_server, hits=30, misses=70))
    rate = result["hit_rate"]
    assert rate["interval_hits"] == 30 and rate["interval_misses"] == 70
    assert rate["interval"] == 0.3
    assert rate["hits"] == 120 and rate["misses"] == 80 and rate["since_start"] == 0.6
    assert "hit rate 30.0% over the interval is below 70%" in result["findings"]


def test_ttl_sampling_comes_after_the_measurement(redis_server):
    """Redis counts TTL lookups as keyspace hits: a second run sees the first run's sampling in the totals only."""
    load_keys(redis_server)
    with RedisClient(port=redis_server.port) as client:
        first = collect(client, interval=0, sample_size=1000)
        second = collect(client, interval=0.1, sample_size=0)
    sampled = first["key_patterns"][0]["sampled"]
    assert second["hit_rate"]["interval_hits"] == 0 and second["hit_rate"]["interval"] is None
    assert sampled == 75
    assert second["hit_rate"]["hits"] - first["hit_rate"]["hits"] == sampled


def test_module_reports_ttls_memory_config_and_prefixes(monkeypatch, redis_server):
    load_keys(redis_server)
    result, failed = run(monkeypatch, redis_server, interval=0.2, _ansible_check_mode=True)
    assert not failed, result
    assert result["changed"] is False and result["reachable"] is True
    assert result["server"]["version"].startswith("7.")
    assert result["keyspace"]["db0"]["keys"] == 75 and result["keyspace"]["db0"]["expires"] == 40
    assert result["config"] == {"available": True, "maxmemory": 0, "maxmemory_policy": "noeviction", "timeout": 0}
    assert result["memory"]["maxmemory_bytes"] == 0 and result["memory"]["percent_of_maxmemory"] is None
    assert result["memory"]["used_bytes"] > 0
    everything = result["key_patterns"][0]
    assert everything["pattern"] == "*" and everything["sampled"] == 75 and everything["scan_complete"] is True
    assert everything["without_ttl"] == 35
    groups = {group["prefix"]: group for group in result["key_prefixes"]}
    assert list(groups) == ["session", "schedule", "(no prefix)"]  # largest group first
    assert groups["session"]["without_ttl_percent"] == 0.0
    assert 290 <= groups["session"]["ttl_seconds"]["min"] <= 300 <= groups["session"]["ttl_seconds"]["max"] <= 339
    assert groups["schedule"]["without_ttl_percent"] == 100.0 and groups["schedule"]["ttl_seconds"]["max"] is None
    assert groups["schedule"]["bytes"]["mean"] > groups["session"]["bytes"]["mean"] > 0
    largest = everything["largest_keys"][0]["key"]
    assert largest.startswith("schedule:…#") and "2026" not in largest  # masked by default
    assert result["memory_usage_available"] is True
    assert "maxmemory is not set: Redis can grow until the host runs out of memory" in result["findings"]


def test_patterns_and_sample_size(monkeypatch, redis_server):
    load_keys(redis_server, sessions=300)
    result, failed = run(monkeypatch, redis_server, interval=0, key_patterns=["session:*", "schedule:*", "nothing:*"],
                         sample_size=50, scan_count=20, prefix_depth=2)
    assert not failed, result
    session, schedule, nothing = result["key_patterns"]
    assert session["sampled"] == 50 and session["scan_complete"] is False and session["without_ttl"] == 0
    assert schedule["sampled"] == 30 and schedule["scan_complete"] is True and schedule["without_ttl_percent"] == 100.0
    assert nothing["sampled"] == 0 and nothing["without_ttl_percent"] is None
    assert result["key_prefixes"] == []  # grouping is for the sample of all keys
    assert result["key_patterns"][1]["largest_keys"][0]["key"].startswith("schedule:2026:…#")  # prefix_depth=2
    assert "100.0% of sampled keys matching 'schedule:*' have no TTL" in result["findings"]


def test_show_key_names(monkeypatch, redis_server):
    load_keys(redis_server, sessions=1, schedules=1, plain=0)
    result, failed = run(monkeypatch, redis_server, interval=0, show_key_names=True)
    assert not failed, result
    assert {entry["key"] for entry in result["key_patterns"][0]["largest_keys"]} == {"session:0", "schedule:2026:0"}


def test_evictions_under_maxmemory(tmp_path):
    server = RedisServer(tmp_path, "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru")
    try:
        def fill(_seconds):  # about 4 MB into a 2 MB cache
            server.pipe([["SET", f"blob:{i}", "v" * 4096] for i in range(1000)])

        with RedisClient(port=server.port) as client:
            result = collect(client, interval=0.1, sample_size=100, sleep=fill)
    finally:
        server.stop()
    assert result["memory"]["maxmemory_bytes"] == 2 * 1024 * 1024
    assert result["memory"]["maxmemory_policy"] == "allkeys-lru"
    assert result["config"]["maxmemory"] == 2 * 1024 * 1024 and result["config"]["maxmemory_policy"] == "allkeys-lru"
    assert result["evictions"]["evicted_keys_interval"] > 0
    assert result["evictions"]["evicted_keys"] == result["evictions"]["evicted_keys_interval"]
    assert any("keys evicted during the interval" in line for line in result["findings"])


def test_memory_percent_of_maxmemory(monkeypatch, tmp_path):
    server = RedisServer(tmp_path, "--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru")
    try:
        server.pipe([["SET", f"blob:{i}", "v" * 4096] for i in range(500)])
        result, failed = run(monkeypatch, server, interval=0, sample_size=0, thresholds={"max_memory_percent": 50})
    finally:
        server.stop()
    assert not failed, result
    memory = result["memory"]
    assert memory["percent_of_maxmemory"] == round(100 * memory["used_bytes"] / (4 * 1024 * 1024), 1)
    assert memory["percent_of_maxmemory"] > 50
    assert any("of maxmemory (policy volatile-lru)" in line for line in result["findings"])
    assert result["key_patterns"] == []


def test_acl_user_without_config_and_memory(monkeypatch, tmp_path):
    """CONFIG and MEMORY refused (as with a locked-down ACL or renamed commands): reported, not fatal."""
    server = RedisServer(tmp_path, "--requirepass", "adminpw")
    try:
        assert server.raw("ACL", "SETUSER", "reader", "on", ">readerpw", "~*", "+@read", "+info", "+scan", "+ping",
                          "-config", "-memory", password="adminpw") == "+OK"
        server.raw("SET", "k1", "v", password="adminpw")
        result, failed = run(monkeypatch, server, username="reader", password="readerpw", interval=0)
        assert not failed, result
        assert result["config"]["available"] is False and "NOPERM" in result["config"]["error"]
        assert result["memory_usage_available"] is False and "NOPERM" in result["memory_usage_error"]
        assert result["key_patterns"][0]["sampled"] == 1 and result["key_patterns"][0]["bytes"]["total"] is None

        result, failed = run(monkeypatch, server, username="reader", password="wrong", interval=0)
        assert failed and result["msg"].startswith("password: Redis at 127.0.0.1:") and "refused the credentials" in result["msg"]
        assert "wrong" not in result["msg"]
        result, failed = run(monkeypatch, server, interval=0)
        assert failed and result["msg"].startswith("password: ") and "needs a password" in result["msg"]
    finally:
        server.stop()


def test_renamed_config_command(monkeypatch, tmp_path):
    server = RedisServer(tmp_path, "--rename-command", "CONFIG", "", "--rename-command", "MEMORY", "")
    try:
        server.raw("SET", "k1", "v")
        result, failed = run(monkeypatch, server, interval=0)
    finally:
        server.stop()
    assert not failed, result
    assert result["config"]["available"] is False and "unknown command" in result["config"]["error"]
    assert result["memory_usage_available"] is False and "unknown command" in result["memory_usage_error"]
    assert result["key_patterns"][0]["sampled"] == 1


def test_unix_socket_and_db(monkeypatch, redis_server):
    redis_server.cli("-n", "3", "SET", "only:in:db3", "1")
    result, failed = run_module(monkeypatch, cache_stats.main, {"unix_socket": redis_server.socket_path, "db": 3, "interval": 0})
    assert not failed, result
    assert result["key_patterns"][0]["sampled"] == 1 and result["key_prefixes"][0]["prefix"] == "only"
    assert result["keyspace"] == {"db3": {"keys": 1, "expires": 0, "avg_ttl": 0}}
    result, failed = run(monkeypatch, redis_server, db=99, interval=0)
    assert failed and result["msg"].startswith("db: ") and "out of range" in result["msg"]


def test_unreachable(monkeypatch):
    port = free_port()
    result, failed = run_module(monkeypatch, cache_stats.main, {"port": port, "interval": 0, "timeout": 1})
    assert failed and result["msg"].startswith(f"host: cannot connect to Redis at 127.0.0.1:{port}")
    result, failed = run_module(monkeypatch, cache_stats.main, {"port": port, "interval": 0, "allow_unreachable": True})
    assert not failed and result["reachable"] is False and "Connection refused" in result["error"]
    result, failed = run_module(monkeypatch, cache_stats.main, {"unix_socket": "/nonexistent/redis.sock", "interval": 0})
    assert failed and result["msg"].startswith("unix_socket: cannot connect")


def test_tls(monkeypatch, tmp_path):
    server = RedisServer(tmp_path, tls=True)
    try:
        server.raw("SET", "k1", "v")
        result, failed = run(monkeypatch, server, tls=True, ca_path=str(server.cert), interval=0)
        assert not failed, result
        assert result["key_patterns"][0]["sampled"] == 1
        result, failed = run(monkeypatch, server, tls=True, interval=0)  # self-signed, not in the system store
        assert failed and result["msg"].startswith("host: cannot connect") and "CERTIFICATE_VERIFY_FAILED" in result["msg"]
        result, failed = run(monkeypatch, server, tls=True, validate_certs=False, interval=0)
        assert not failed and result["reachable"] is True
        result, failed = run(monkeypatch, server, interval=0, timeout=2)  # plain RESP to a TLS port
        assert failed and result["msg"].startswith("host: ") and "tls" in result["msg"]
    finally:
        server.stop()


def test_a_port_that_is_not_redis(monkeypatch):
    """An HTTP server answers RESP with an HTTP error page: reported as not Redis, not a crash."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        result, failed = run_module(monkeypatch, cache_stats.main, {"port": httpd.server_address[1], "interval": 0, "timeout": 2})
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert failed and result["msg"].startswith("host: not a Redis reply: ") and "is this port Redis" in result["msg"]


@pytest.mark.parametrize("args, message", [
    ({"interval": 301}, "interval: must be between 0 and 300"),
    ({"sample_size": -1}, "sample_size: must be between 0 and 100000"),
    ({"prefix_depth": 0}, "prefix_depth: must be 1 or more"),
    ({"scan_count": 0}, "scan_count: must be between 1 and 100000"),
    ({"key_patterns": [""]}, "key_patterns: patterns must not be empty"),
    ({"timeout": -1}, "timeout: must be greater than 0"),
])
def test_bad_inputs_name_the_option(monkeypatch, redis_server, args, message):
    result, failed = run(monkeypatch, redis_server, **args)
    assert failed and result["msg"].startswith(message), result


def test_injection_strings_are_sent_as_values(monkeypatch, redis_server):
    """Patterns and passwords travel as RESP bulk strings: a CRLF and a command inside them are data, never run."""
    load_keys(redis_server, sessions=3, schedules=2, plain=0)
    hostile = ["*\r\nFLUSHALL\r\n", "session:*\r\n*1\r\n$8\r\nFLUSHALL\r\n", "x\" ; SET pwned 1 ; \""]
    result, failed = run(monkeypatch, redis_server, interval=0, key_patterns=hostile)
    assert not failed, result
    assert [entry["sampled"] for entry in result["key_patterns"]] == [0, 0, 0]
    assert [entry["pattern"] for entry in result["key_patterns"]] == hostile
    result, failed = run(monkeypatch, redis_server, interval=0, password="x\r\nFLUSHALL\r\n")
    assert failed and result["msg"].startswith("password: ")  # AUTH with that string refused; nothing else sent
    assert redis_server.raw("DBSIZE") == ":5" and redis_server.raw("EXISTS", "pwned") == ":0"
