#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cache_stats
short_description: Redis hit rate, memory against maxmemory, evictions and key TTLs
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Answers the LowCacheHitRate runbook (check cache configuration, review cached data TTLs, analyze cache key
    patterns, check Redis memory usage) and the SlowResponseTime step "check cache hit rate".
  - The hit rate is measured over O(interval) from two C(INFO stats) samples, so it reflects the traffic right now;
    the ratio since Redis started is returned as well.
  - Keys are sampled with C(SCAN) (never C(KEYS)), then C(TTL) and C(MEMORY USAGE) per sampled key. Redis counts the
    C(TTL) lookups as keyspace hits, so sampling happens after the hit-rate interval has been measured.
  - Read-only; never changes anything and runs fully in check mode. Needs no Python library on the target.
extends_documentation_fragment:
  - sre.runbooks.redis
options:
  interval:
    description:
      - Seconds between the two C(INFO stats) samples the interval hit rate, evictions and expirations are computed from.
      - V(0) takes one sample only; the interval figures are then V(null).
    type: float
    default: 5
  key_patterns:
    description:
      - C(SCAN MATCH) glob patterns, such as V(schedule:*) or V(session:*); each is sampled and summarised on its own.
      - When omitted, all keys are sampled and grouped by prefix (see O(prefix_depth)).
    type: list
    elements: str
  sample_size:
    description: Keys sampled per pattern, at most 100000. V(0) skips key sampling.
    type: int
    default: 200
  scan_count:
    description:
      - The C(COUNT) hint of each C(SCAN) call, between 1 and 100000. Each call stays cheap for Redis; a larger hint
        finds keys of a rare pattern in fewer calls (the walk stops after 2000 calls).
    type: int
    default: 1000
  memory_usage:
    description:
      - Ask C(MEMORY USAGE) for each sampled key. If the command is refused (renamed, ACL), sizes are V(null) and
        RV(memory_usage_error) says why.
    type: bool
    default: true
  prefix_depth:
    description:
      - When O(key_patterns) is omitted, keys are grouped by their first this many C(:)-separated segments.
      - Also the prefix kept when key names are masked (see O(show_key_names)).
    type: int
    default: 1
  show_key_names:
    description:
      - Show full key names in C(largest_keys). Key names often hold session ids, tokens or e-mail addresses, so by
        default only the prefix and a short hash are shown (V(session:…#1a2b3c4d)).
    type: bool
    default: false
  thresholds:
    description: Limits the RV(findings) sentences are written against; they never make the module fail.
    type: dict
    default: {}
    suboptions:
      min_hit_rate:
        description: Hit rate (0 to 1) below which the cache is reported as ineffective; the runbook's alert uses 0.7.
        type: float
        default: 0.7
      max_memory_percent:
        description: Percent of C(maxmemory) from which memory is reported as nearly full.
        type: float
        default: 90
      max_without_ttl_percent:
        description: Percent of sampled keys without a TTL above which a pattern is reported.
        type: float
        default: 50
seealso:
  - module: community.general.redis_info
  - name: Redis INFO
    description: The fields this module reads.
    link: https://redis.io/docs/latest/commands/info/
"""

EXAMPLES = r"""
- name: Hit rate over 10 seconds, memory and TTLs of the scheduler's cache keys
  sre.runbooks.cache_stats:
    host: 127.0.0.1
    port: 6379
    password: "{{ redis_password }}"
    interval: 10
    key_patterns:
      - "schedule:*"
      - "session:*"
    allow_unreachable: true
  register: cache

- name: Report a cache that misses too often
  ansible.builtin.debug:
    msg: "{{ cache.findings }}"
  when: cache.reachable and cache.findings | length > 0

- name: All keys grouped by their first two segments, no interval
  sre.runbooks.cache_stats:
    unix_socket: /run/redis/redis-server.sock
    interval: 0
    prefix_depth: 2
    sample_size: 1000
"""

RETURN = r"""
reachable:
  description: Whether Redis answered. Only V(false) when O(allow_unreachable=true).
  returned: always
  type: bool
  sample: true
error:
  description: Why Redis could not be reached.
  returned: when RV(reachable=false)
  type: str
  sample: "cannot connect to Redis at 127.0.0.1:6379: [Errno 111] Connection refused"
server:
  description: C(version), C(mode), C(role), C(uptime_seconds), C(connected_clients), C(blocked_clients) and
    C(ops_per_second) over the interval.
  returned: when Redis answered
  type: dict
  sample: {"version": "7.0.15", "role": "master", "uptime_seconds": 86400, "connected_clients": 12, "ops_per_second": 850.2}
hit_rate:
  description:
    - C(interval) is hits over lookups during the interval (V(null) with no lookups or O(interval=0)),
      with C(interval_hits), C(interval_misses) and C(interval_seconds).
    - C(since_start) is the same ratio since Redis started, with the totals C(hits) and C(misses).
  returned: when Redis answered
  type: dict
  sample: {"interval": 0.62, "interval_hits": 620, "interval_misses": 380, "interval_seconds": 5.0, "since_start": 0.91,
           "hits": 912000, "misses": 88000}
memory:
  description: C(used_bytes), C(used_human), C(rss_bytes), C(peak_bytes), C(maxmemory_bytes) (0 is unlimited),
    C(maxmemory_policy), C(percent_of_maxmemory) and C(fragmentation_ratio).
  returned: when Redis answered
  type: dict
  sample: {"used_bytes": 104857600, "maxmemory_bytes": 134217728, "maxmemory_policy": "allkeys-lru", "percent_of_maxmemory": 78.1,
           "fragmentation_ratio": 1.12}
evictions:
  description: C(evicted_keys) and C(expired_keys) since start, and the same counts during the interval (C(*_interval)).
  returned: when Redis answered
  type: dict
  sample: {"evicted_keys": 1042, "evicted_keys_interval": 37, "expired_keys": 50211, "expired_keys_interval": 12}
config:
  description:
    - C(CONFIG GET) of C(maxmemory), C(maxmemory-policy) and C(timeout) (dashes become underscores), with C(available=true).
    - When C(CONFIG) is renamed, disabled or forbidden by ACL, only C(available=false) and the C(error) Redis gave.
  returned: when Redis answered
  type: dict
  sample: {"available": true, "maxmemory": 134217728, "maxmemory_policy": "allkeys-lru", "timeout": 0}
keyspace:
  description: The C(INFO keyspace) section per database, with C(keys), C(expires) and C(avg_ttl) (milliseconds).
  returned: when Redis answered
  type: dict
  sample: {"db0": {"keys": 15000, "expires": 9000, "avg_ttl": 1750000}}
key_patterns:
  description:
    - One entry per pattern (V(*) when O(key_patterns) is omitted) with C(sampled), C(without_ttl),
      C(without_ttl_percent), C(ttl_seconds) (C(min), C(median), C(max) of keys that have a TTL), C(bytes)
      (C(total), C(mean), C(max) from C(MEMORY USAGE)), C(largest_keys) (names masked unless O(show_key_names=true)),
      C(scan_complete) and C(scan_calls).
    - C(scan_complete=false) means the sample stopped at O(sample_size) or after 2000 C(SCAN) calls.
  returned: when Redis answered
  type: list
  elements: dict
  sample: [{"pattern": "schedule:*", "sampled": 200, "without_ttl": 150, "without_ttl_percent": 75.0,
            "ttl_seconds": {"min": 12, "median": 300, "max": 3600}, "bytes": {"total": 81920, "mean": 410, "max": 2048},
            "scan_complete": false, "scan_calls": 3, "largest_keys": [{"key": "schedule:…#1a2b3c4d", "bytes": 2048}]}]
key_prefixes:
  description: When O(key_patterns) is omitted, the sampled keys grouped by prefix, largest group first, with the
    same statistics as RV(key_patterns). Keys without a C(:) are grouped as C((no prefix)).
  returned: when Redis answered
  type: list
  elements: dict
  sample: [{"prefix": "session", "sampled": 120, "without_ttl": 0, "without_ttl_percent": 0.0,
            "ttl_seconds": {"min": 5, "median": 900, "max": 1800}, "bytes": {"total": 30000, "mean": 250, "max": 300}}]
memory_usage_available:
  description: Whether key sizes could be read with C(MEMORY USAGE).
  returned: when Redis answered
  type: bool
memory_usage_error:
  description: Why C(MEMORY USAGE) was refused.
  returned: when C(MEMORY USAGE) was refused
  type: str
findings:
  description: Sentences for the incident report, written against O(thresholds).
  returned: when Redis answered
  type: list
  elements: str
  sample: ["hit rate 62.0% over the interval is below 70%", "37 keys evicted during the interval: the cache is too small for its working set"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._cache_stats import collect
from ansible_collections.sre.runbooks.plugins.module_utils._redis import (
    RedisAuthError,
    RedisReplyError,
    RedisUnreachable,
    client_from_params,
    redis_argument_spec,
)


def main() -> None:
    argument_spec = redis_argument_spec()
    argument_spec.update(
        interval={"type": "float", "default": 5},
        key_patterns={"type": "list", "elements": "str", "no_log": False},
        sample_size={"type": "int", "default": 200},
        scan_count={"type": "int", "default": 1000},
        memory_usage={"type": "bool", "default": True},
        prefix_depth={"type": "int", "default": 1},
        show_key_names={"type": "bool", "default": False},
        thresholds={"type": "dict", "default": {}, "options": {
            "min_hit_rate": {"type": "float", "default": 0.7},
            "max_memory_percent": {"type": "float", "default": 90},
            "max_without_ttl_percent": {"type": "float", "default": 50},
        }},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        with client_from_params(params) as client:
            result = collect(client, interval=params["interval"], key_patterns=params["key_patterns"],
                             sample_size=params["sample_size"], memory_usage=params["memory_usage"],
                             prefix_depth=params["prefix_depth"], scan_count=params["scan_count"],
                             show_key_names=params["show_key_names"],
                             thresholds=params["thresholds"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    except RedisAuthError as exc:
        module.fail_json(msg=f"password: {exc}")
    except RedisUnreachable as exc:
        if not params["allow_unreachable"]:
            option = "unix_socket" if params["unix_socket"] else "host"
            module.fail_json(msg=f"{option}: {exc}", reachable=False)
        module.exit_json(changed=False, reachable=False, error=str(exc))
    except RedisReplyError as exc:
        text = str(exc)
        module.fail_json(msg=text if text.startswith("db: ") else f"Redis refused a read-only command: {text}")
    module.exit_json(changed=False, reachable=True, **result)


if __name__ == "__main__":
    main()
