# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis cache health for the LowCacheHitRate and SlowResponseTime runbooks.

Everything here is read-only: INFO, CONFIG GET, SCAN, TTL and MEMORY USAGE.  Key sampling
runs *after* the two INFO samples because Redis counts TTL lookups as keyspace hits, and
the hit rate measured over the interval must be the application's, not ours.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from typing import Any, Callable

from ansible_collections.sre.runbooks.plugins.module_utils._redis import RedisClient, RedisReplyError

MAX_INTERVAL = 300
MAX_SAMPLE_SIZE = 100000
# SCAN with MATCH on a big keyspace may need many calls to find few keys; this bounds the walk.
MAX_SCAN_CALLS = 2000
CONFIG_PARAMETERS = ("maxmemory", "maxmemory-policy", "timeout")
NO_PREFIX = "(no prefix)"


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_info(text: str) -> dict[str, dict[str, Any]]:
    """INFO output → {section: {field: value}}; numbers become int/float, keyspace lines dicts."""
    sections: dict[str, dict[str, Any]] = {}
    current = sections.setdefault("default", {})
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            current = sections.setdefault(line.lstrip("# ").strip().lower(), {})
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if "=" in value and all("=" in item for item in value.split(",")):
            # db0:keys=12,expires=3,avg_ttl=0  and  cmdstat_get:calls=1,usec=2,...
            current[key] = {k: _number(v) for k, _sep, v in (item.partition("=") for item in value.split(","))}
        else:
            current[key] = _number(value)
    if not sections["default"]:
        del sections["default"]
    return sections


def _flatten(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for fields in sections.values():
        flat.update(fields)
    return flat


def ratio(hits: float, misses: float) -> float | None:
    """Hits over lookups, or None when there were no lookups (no traffic is not a 0% hit rate)."""
    total = hits + misses
    return round(hits / total, 4) if total > 0 else None


def summarise_ttls(ttls: list[int], sizes: list[int | None]) -> dict[str, Any]:
    """Counts, share without TTL, TTL min/median/max (seconds), and bytes for one group of sampled keys."""
    with_ttl = sorted(ttl for ttl in ttls if ttl >= 0)
    without = sum(1 for ttl in ttls if ttl == -1)
    known_sizes = [size for size in sizes if size is not None]
    count = len(ttls)
    return {
        "sampled": count,
        "without_ttl": without,
        "without_ttl_percent": round(100.0 * without / count, 1) if count else None,
        "ttl_seconds": {
            "min": with_ttl[0] if with_ttl else None,
            "median": statistics.median(with_ttl) if with_ttl else None,
            "max": with_ttl[-1] if with_ttl else None,
        },
        "bytes": {
            "total": sum(known_sizes) if known_sizes else None,
            "mean": round(sum(known_sizes) / len(known_sizes)) if known_sizes else None,
            "max": max(known_sizes) if known_sizes else None,
        },
    }


def key_prefix(key: str, depth: int) -> str:
    """The first ``depth`` ``:``-separated segments of a key; keys without a ``:`` share one group."""
    parts = key.split(":")
    if len(parts) <= 1:
        return NO_PREFIX
    return ":".join(parts[:min(depth, len(parts) - 1)])


def mask_key(key: str, depth: int) -> str:
    """``session:9f8e7d...`` → ``session:…#1a2b3c4d``: key names can hold session ids or e-mail addresses,
    so only the prefix and a short stable hash (to tell keys apart and match them up) are shown."""
    digest = hashlib.sha256(key.encode("utf-8", errors="surrogateescape")).hexdigest()[:8]
    prefix = key_prefix(key, depth)
    return f"{prefix}:…#{digest}" if prefix != NO_PREFIX else f"…#{digest}"


def scan_keys(client: RedisClient, pattern: str, limit: int, count_hint: int) -> tuple[list[str], bool, int]:
    """SCAN (never KEYS) for up to ``limit`` keys matching ``pattern``; return (keys, complete, calls)."""
    seen: dict[str, None] = {}
    cursor = "0"
    calls = 0
    while True:
        cursor, batch = client.command("SCAN", cursor, "MATCH", pattern, "COUNT", count_hint)
        calls += 1
        for key in batch:
            seen.setdefault(key, None)
            if len(seen) >= limit:
                return list(seen)[:limit], cursor == "0", calls
        if cursor == "0":
            return list(seen), True, calls
        if calls >= MAX_SCAN_CALLS:
            return list(seen), False, calls


class _Sampler:
    """TTL and MEMORY USAGE for keys, pipelined; remembers when MEMORY USAGE is refused."""

    def __init__(self, client: RedisClient, memory_usage: bool):
        self.client = client
        self.memory_usage = memory_usage
        self.memory_usage_error: str | None = None

    def sample(self, keys: list[str]) -> list[tuple[str, int, int | None]]:
        rows: list[tuple[str, int, int | None]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            commands: list[tuple[Any, ...]] = [("TTL", key) for key in chunk]
            if self.memory_usage:
                commands += [("MEMORY", "USAGE", key) for key in chunk]
            replies = self.client.pipeline(commands)
            ttls, sizes = replies[:len(chunk)], replies[len(chunk):] or [None] * len(chunk)
            for key, ttl, size in zip(chunk, ttls, sizes):
                if isinstance(ttl, RedisReplyError):
                    raise ttl
                if isinstance(size, RedisReplyError):
                    self.memory_usage = False
                    self.memory_usage_error = str(size)
                    size = None
                if ttl == -2:  # expired or deleted between SCAN and TTL
                    continue
                rows.append((key, ttl, size))
        return rows


def read_config(client: RedisClient) -> dict[str, Any]:
    """CONFIG GET of the cache settings; a renamed or forbidden CONFIG is reported, not fatal."""
    config: dict[str, Any] = {"available": True}
    for name in CONFIG_PARAMETERS:
        try:
            reply = client.command("CONFIG", "GET", name)
        except RedisReplyError as exc:
            return {"available": False, "error": str(exc)}
        pairs = dict(zip(reply[::2], reply[1::2])) if isinstance(reply, list) else {}
        if name in pairs:
            config[name.replace("-", "_")] = _number(pairs[name])
    return config


def _validate(interval: float, sample_size: int, key_patterns: list[str] | None, prefix_depth: int, scan_count: int) -> None:
    if not 0 <= interval <= MAX_INTERVAL:
        raise ValueError(f"interval: must be between 0 and {MAX_INTERVAL} seconds, got {interval}")
    if not 0 <= sample_size <= MAX_SAMPLE_SIZE:
        raise ValueError(f"sample_size: must be between 0 and {MAX_SAMPLE_SIZE}, got {sample_size}")
    if prefix_depth < 1:
        raise ValueError(f"prefix_depth: must be 1 or more, got {prefix_depth}")
    if not 1 <= scan_count <= 100000:
        raise ValueError(f"scan_count: must be between 1 and 100000, got {scan_count}")
    for pattern in key_patterns or []:
        if not pattern:
            raise ValueError("key_patterns: patterns must not be empty strings")


def collect(client: RedisClient, interval: float = 5.0, key_patterns: list[str] | None = None, sample_size: int = 200,
            memory_usage: bool = True, prefix_depth: int = 1, scan_count: int = 1000, show_key_names: bool = False,
            thresholds: dict[str, Any] | None = None, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Hit rate (interval and since boot), memory, evictions, config, keyspace and TTL samples."""
    _validate(interval, sample_size, key_patterns, prefix_depth, scan_count)
    first = parse_info(client.command("INFO"))
    first_flat = _flatten(first)
    started = time.monotonic()
    if interval > 0:
        sleep(interval)
        second_flat = _flatten(parse_info(client.command("INFO", "stats")))
    else:
        second_flat = first_flat
    elapsed = time.monotonic() - started

    def delta(field: str) -> int | None:
        if interval <= 0 or field not in first_flat or field not in second_flat:
            return None
        return second_flat[field] - first_flat[field]

    hits, misses = second_flat.get("keyspace_hits", 0), second_flat.get("keyspace_misses", 0)
    hits_delta, misses_delta = delta("keyspace_hits"), delta("keyspace_misses")
    commands_delta = delta("total_commands_processed")
    hit_rate = {
        "interval": ratio(hits_delta, misses_delta) if hits_delta is not None else None,
        "interval_seconds": round(elapsed, 3) if interval > 0 else 0,
        "interval_hits": hits_delta,
        "interval_misses": misses_delta,
        "since_start": ratio(hits, misses),
        "hits": hits,
        "misses": misses,
    }
    maxmemory = first_flat.get("maxmemory", 0)
    used = first_flat.get("used_memory")
    memory = {
        "used_bytes": used,
        "used_human": first_flat.get("used_memory_human"),
        "rss_bytes": first_flat.get("used_memory_rss"),
        "peak_bytes": first_flat.get("used_memory_peak"),
        "maxmemory_bytes": maxmemory,
        "maxmemory_policy": first_flat.get("maxmemory_policy"),
        "percent_of_maxmemory": round(100.0 * used / maxmemory, 1) if maxmemory and used is not None else None,
        "fragmentation_ratio": first_flat.get("mem_fragmentation_ratio"),
    }
    evictions = {
        "evicted_keys": second_flat.get("evicted_keys"),
        "evicted_keys_interval": delta("evicted_keys"),
        "expired_keys": second_flat.get("expired_keys"),
        "expired_keys_interval": delta("expired_keys"),
    }
    server = {
        "version": first_flat.get("redis_version"),
        "mode": first_flat.get("redis_mode"),
        "role": first_flat.get("role"),
        "uptime_seconds": first_flat.get("uptime_in_seconds"),
        "connected_clients": first_flat.get("connected_clients"),
        "blocked_clients": first_flat.get("blocked_clients"),
        "ops_per_second": round(commands_delta / elapsed, 1) if commands_delta is not None and elapsed > 0 else None,
    }
    keyspace = {name: fields for name, fields in first.get("keyspace", {}).items() if isinstance(fields, dict)}
    config = read_config(client)

    sampler = _Sampler(client, memory_usage)
    patterns_out: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    if sample_size > 0:
        for pattern in key_patterns or ["*"]:
            keys, complete, calls = scan_keys(client, pattern, sample_size, scan_count)
            rows = sampler.sample(keys)
            entry = {"pattern": pattern, "scan_complete": complete, "scan_calls": calls}
            entry.update(summarise_ttls([ttl for _key, ttl, _size in rows], [size for _key, _ttl, size in rows]))
            entry["largest_keys"] = [{"key": key if show_key_names else mask_key(key, prefix_depth), "bytes": size}
                                     for key, _ttl, size in
                                     sorted((r for r in rows if r[2] is not None), key=lambda r: -r[2])[:5]]
            patterns_out.append(entry)
            if not key_patterns:
                by_prefix: dict[str, list[tuple[str, int, int | None]]] = {}
                for row in rows:
                    by_prefix.setdefault(key_prefix(row[0], prefix_depth), []).append(row)
                for prefix, members in sorted(by_prefix.items(), key=lambda item: (-len(item[1]), item[0])):
                    group = {"prefix": prefix}
                    group.update(summarise_ttls([ttl for _key, ttl, _size in members], [size for _key, _ttl, size in members]))
                    groups.append(group)

    result = {
        "server": server,
        "hit_rate": hit_rate,
        "memory": memory,
        "evictions": evictions,
        "config": config,
        "keyspace": keyspace,
        "key_patterns": patterns_out,
        "key_prefixes": groups,
        "memory_usage_available": sampler.memory_usage_error is None if memory_usage else False,
    }
    if sampler.memory_usage_error:
        result["memory_usage_error"] = sampler.memory_usage_error
    result["findings"] = findings(result, thresholds or {})
    return result


def findings(result: dict[str, Any], thresholds: dict[str, Any]) -> list[str]:
    """Plain sentences for the incident report, from the runbook's thresholds."""
    out: list[str] = []
    min_hit_rate = thresholds.get("min_hit_rate", 0.7)
    max_memory_percent = thresholds.get("max_memory_percent", 90)
    max_without_ttl = thresholds.get("max_without_ttl_percent", 50)
    hit_rate = result["hit_rate"]
    measured = hit_rate["interval"] if hit_rate["interval"] is not None else hit_rate["since_start"]
    where = "over the interval" if hit_rate["interval"] is not None else "since Redis started"
    if measured is not None and measured < min_hit_rate:
        out.append(f"hit rate {measured:.1%} {where} is below {min_hit_rate:.0%}")
    memory = result["memory"]
    if memory["percent_of_maxmemory"] is not None and memory["percent_of_maxmemory"] >= max_memory_percent:
        out.append(f"memory at {memory['percent_of_maxmemory']}% of maxmemory (policy {memory['maxmemory_policy']})")
    if not memory["maxmemory_bytes"]:
        out.append("maxmemory is not set: Redis can grow until the host runs out of memory")
    evicted = result["evictions"]["evicted_keys_interval"]
    if evicted:
        out.append(f"{evicted} keys evicted during the interval: the cache is too small for its working set")
    for entry in result["key_patterns"]:
        share = entry["without_ttl_percent"]
        if share is not None and share > max_without_ttl:
            out.append(f"{share}% of sampled keys matching {entry['pattern']!r} have no TTL")
    return out
