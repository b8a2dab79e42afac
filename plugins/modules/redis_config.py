#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_config
short_description: Set Redis configuration at run time (CONFIG SET) and persist it (CONFIG REWRITE)
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - The cache tuning step of the HighMemoryUsage / cache runbooks (C(maxmemory), C(maxmemory-policy), C(timeout), ...).
  - Compares each setting with C(CONFIG GET) (memory sizes such as V(256mb) compared in bytes), sets only what differs,
    reads every value back, and then runs C(CONFIG REWRITE) so the change survives a restart.
  - If a C(CONFIG SET) is refused half way, the settings already changed are set back to their previous values, so the server
    is never left half tuned.
  - Exists because C(community.general.redis) needs the redis-py library on the target and cannot C(CONFIG REWRITE).
extends_documentation_fragment:
  - sre.runbooks.redis
options:
  settings:
    description: Configuration parameters and their values, such as V(maxmemory) V(512mb) and V(maxmemory-policy) V(allkeys-lru).
    type: dict
    required: true
  rewrite:
    description: Persist with C(CONFIG REWRITE) after a change (fails when the server runs without a configuration file).
    type: bool
    default: true
notes:
  - Supports check mode and C(--diff) (each changed setting before and after).
"""

EXAMPLES = r"""
- name: Cap Redis memory and evict least recently used keys
  sre.runbooks.redis_config:
    host: 127.0.0.1
    password: "{{ redis_password }}"
    settings:
      maxmemory: 512mb
      maxmemory-policy: allkeys-lru
"""

RETURN = r"""
changes:
  description: Each setting that changed (or would), with C(before) and C(after) as Redis reports them.
  returned: always
  type: dict
  sample: {"maxmemory-policy": {"before": "noeviction", "after": "allkeys-lru"}}
rewritten:
  description: Whether C(CONFIG REWRITE) ran.
  returned: always
  type: bool
reachable:
  description: V(false) when Redis could not be reached and O(allow_unreachable=true) (nothing was changed).
  returned: when unreachable
  type: bool
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._redis import (
    RedisReplyError, RedisUnreachable, client_from_params, redis_argument_spec,
)

_SIZE = re.compile(r"^(\d+)\s*(b|k|kb|m|mb|g|gb)?$", re.I)
_FACTOR = {None: 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}


def normalise(value) -> str:
    """What CONFIG GET would answer for ``value``: memory units in bytes, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).strip()
    match = _SIZE.match(text)
    if match and match.group(2):
        return str(int(match.group(1)) * _FACTOR[match.group(2).lower()])
    return text


def get(client, name: str) -> str:
    reply = client.command("CONFIG", "GET", name)
    if not reply:
        raise RedisReplyError(f"settings: Redis has no configuration parameter {name!r}")
    return str(reply[1])


def main() -> None:
    spec = redis_argument_spec()
    spec.update({"settings": {"type": "dict", "required": True}, "rewrite": {"type": "bool", "default": True}})
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    settings = module.params["settings"]
    if not settings:
        module.fail_json(msg="settings: give at least one parameter")
    try:
        client = client_from_params(module.params)
    except RedisUnreachable as exc:
        if module.params["allow_unreachable"]:
            module.exit_json(changed=False, reachable=False, changes={}, rewritten=False, msg=str(exc))
        module.fail_json(msg=str(exc))
    except (ValueError, RedisReplyError) as exc:
        module.fail_json(msg=str(exc))
    changes, done, rewritten = {}, [], False
    try:
        with client:
            for name, value in settings.items():
                before = get(client, name)
                if before != normalise(value):
                    changes[name] = {"before": before, "after": normalise(value)}
            if changes and not module.check_mode:
                try:
                    for name in changes:
                        client.command("CONFIG", "SET", name, normalise(settings[name]))
                        done.append(name)
                        changes[name]["after"] = get(client, name)
                except RedisReplyError as exc:
                    for name in reversed(done):
                        client.command("CONFIG", "SET", name, changes[name]["before"])
                    module.fail_json(msg=f"settings: Redis refused {name}={settings[name]!r}: {exc}; "
                                         f"{len(done)} setting(s) already changed were set back", changes={})
                if module.params["rewrite"]:
                    client.command("CONFIG", "REWRITE")
                    rewritten = True
    except RedisUnreachable as exc:
        module.fail_json(msg=str(exc))
    except RedisReplyError as exc:
        module.fail_json(msg=f"{exc}", changes=changes)
    diff = {"before": "".join(f"{k} {v['before']}\n" for k, v in changes.items()),
            "after": "".join(f"{k} {v['after']}\n" for k, v in changes.items())}
    module.exit_json(changed=bool(changes), changes=changes, rewritten=rewritten, **({"diff": diff} if module._diff else {}))


if __name__ == "__main__":
    main()
