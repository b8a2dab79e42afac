"""Parsers and summaries of cache_stats, and the RESP client's encoding and reply parsing."""

from __future__ import annotations

import io

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._cache_stats import (
    NO_PREFIX,
    findings,
    key_prefix,
    mask_key,
    parse_info,
    ratio,
    summarise_ttls,
)
from ansible_collections.sre.runbooks.plugins.module_utils._redis import (
    RedisAuthError,
    RedisProtocolError,
    RedisReplyError,
    RedisUnreachable,
    RespReader,
    client_from_params,
    encode_command,
    redis_argument_spec,
)

INFO = """# Server\r
redis_version:7.0.15\r
redis_mode:standalone\r
uptime_in_seconds:3600\r
executable:/usr/bin/redis-server\r
\r
# Memory\r
used_memory:1048576\r
used_memory_human:1.00M\r
maxmemory:2097152\r
maxmemory_policy:allkeys-lru\r
mem_fragmentation_ratio:1.25\r
\r
# Stats\r
keyspace_hits:70\r
keyspace_misses:30\r
evicted_keys:4\r
errorstat_ERR:count=2\r
\r
# Keyspace\r
db0:keys=12,expires=3,avg_ttl=4500\r
db2:keys=1,expires=0,avg_ttl=0\r
"""


def test_parse_info_sections_numbers_and_keyspace():
    info = parse_info(INFO)
    assert info["server"]["redis_version"] == "7.0.15"
    assert info["server"]["uptime_in_seconds"] == 3600
    assert info["server"]["executable"] == "/usr/bin/redis-server"
    assert info["memory"]["mem_fragmentation_ratio"] == 1.25
    assert info["memory"]["maxmemory_policy"] == "allkeys-lru"
    assert info["stats"]["keyspace_hits"] == 70
    assert info["stats"]["errorstat_ERR"] == {"count": 2}
    assert info["keyspace"] == {"db0": {"keys": 12, "expires": 3, "avg_ttl": 4500},
                                "db2": {"keys": 1, "expires": 0, "avg_ttl": 0}}


def test_parse_info_without_section_headers():
    assert parse_info("keyspace_hits:5\nkeyspace_misses:0\n") == {"default": {"keyspace_hits": 5, "keyspace_misses": 0}}


@pytest.mark.parametrize("hits, misses, expected", [(70, 30, 0.7), (0, 0, None), (0, 5, 0.0), (3, 0, 1.0), (1, 2, 0.3333)])
def test_ratio(hits, misses, expected):
    assert ratio(hits, misses) == expected


def test_summarise_ttls_counts_median_and_bytes():
    summary = summarise_ttls([-1, 10, 30, 20, -1], [100, 50, None, 150, 200])
    assert summary["sampled"] == 5
    assert summary["without_ttl"] == 2
    assert summary["without_ttl_percent"] == 40.0
    assert summary["ttl_seconds"] == {"min": 10, "median": 20, "max": 30}
    assert summary["bytes"] == {"total": 500, "mean": 125, "max": 200}


def test_summarise_ttls_empty_and_no_sizes():
    summary = summarise_ttls([], [])
    assert summary["sampled"] == 0 and summary["without_ttl_percent"] is None
    assert summary["ttl_seconds"]["median"] is None and summary["bytes"]["total"] is None


@pytest.mark.parametrize("key, depth, expected", [
    ("session:abc:1", 1, "session"),
    ("session:abc:1", 2, "session:abc"),
    ("session:abc:1", 5, "session:abc"),  # never the whole key: that would be one group per key
    ("counter", 1, NO_PREFIX),
    ("cache:", 1, "cache"),
])
def test_key_prefix(key, depth, expected):
    assert key_prefix(key, depth) == expected


def _result(**overrides):
    result = {
        "hit_rate": {"interval": 0.5, "since_start": 0.9},
        "memory": {"percent_of_maxmemory": 95.0, "maxmemory_bytes": 100, "maxmemory_policy": "allkeys-lru"},
        "evictions": {"evicted_keys_interval": 3},
        "key_patterns": [{"pattern": "*", "without_ttl_percent": 80.0}],
    }
    result.update(overrides)
    return result


def test_findings_cover_hit_rate_memory_evictions_and_ttls():
    out = findings(_result(), {})
    assert any("hit rate 50.0% over the interval is below 70%" in line for line in out)
    assert any("95.0% of maxmemory" in line for line in out)
    assert any("3 keys evicted" in line for line in out)
    assert any("80.0% of sampled keys matching '*' have no TTL" in line for line in out)


def test_findings_fall_back_to_since_start_and_respect_thresholds():
    result = _result(hit_rate={"interval": None, "since_start": 0.65},
                     memory={"percent_of_maxmemory": None, "maxmemory_bytes": 0, "maxmemory_policy": "noeviction"},
                     evictions={"evicted_keys_interval": None}, key_patterns=[])
    out = findings(result, {"min_hit_rate": 0.6})
    assert out == ["maxmemory is not set: Redis can grow until the host runs out of memory"]
    assert any("since Redis started" in line for line in findings(result, {"min_hit_rate": 0.7}))


def test_encode_command_uses_byte_lengths():
    assert encode_command("SET", "k", "é") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n"


def test_resp_reader_types():
    stream = io.BytesIO(b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n$1\r\n0\r\n*1\r\n$3\r\nkey\r\n*-1\r\n"
                        b"-ERR unknown command 'CONFIG'\r\n-WRONGPASS invalid username-password pair\r\n")
    reader = RespReader(stream)
    assert reader.read() == "OK"
    assert reader.read() == 42
    assert reader.read() == b"hello"
    assert reader.read() is None
    assert reader.read() == [b"0", [b"key"]]
    assert reader.read() is None
    error = reader.read()
    assert isinstance(error, RedisReplyError) and error.code == "ERR"
    assert isinstance(reader.read(), RedisAuthError)
    with pytest.raises(RedisUnreachable, match="connection closed by the server"):
        reader.read()


def test_resp_reader_rejects_non_redis_peer():
    with pytest.raises(RedisProtocolError, match="not a Redis reply"):
        RespReader(io.BytesIO(b"HTTP/1.1 400 Bad Request\r\n")).read()


def _params(**overrides):
    params = {name: spec.get("default") for name, spec in redis_argument_spec().items()}
    params.update(overrides)
    return params


@pytest.mark.parametrize("overrides, message", [
    ({"timeout": 0}, "timeout: must be greater than 0"),
    ({"port": 70000}, "port: must be between 1 and 65535"),
    ({"db": -1}, "db: must be 0 or more"),
    ({"username": "app"}, "username: needs password"),
])
def test_client_from_params_names_bad_option(overrides, message):
    with pytest.raises(ValueError, match=message):
        client_from_params(_params(**overrides))


def test_password_is_no_log():
    assert redis_argument_spec()["password"]["no_log"] is True


def test_mask_key_keeps_prefix_and_a_stable_hash():
    masked = mask_key("session:9f8e7d6c5b4a", 1)
    assert masked.startswith("session:…#") and "9f8e7d" not in masked
    assert masked == mask_key("session:9f8e7d6c5b4a", 1) != mask_key("session:other", 1)
    assert mask_key("alice@example.org", 1).startswith("…#") and "alice" not in mask_key("alice@example.org", 1)
    assert mask_key("a:b:c", 2).startswith("a:b:…#")
