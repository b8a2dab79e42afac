#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ip_blocklist
short_description: Block or unblock addresses with expiry in an nftables set, and optionally an application denylist
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - The "Block suspicious IPs" step of the FailedAuthenticationSpike runbook and "Block suspicious activity" of the Heart
    Disease security runbook.
  - Addresses and CIDR networks go into an nftables set with C(flags interval, timeout); each element expires on its own after
    O(timeout), so a block cannot be forgotten. The table, the two sets (IPv4, IPv6) of an C(inet) table and the input chain with its rules are
    created on first use.
  - Every change of a run is one C(nft -f) transaction, applied completely or not at all.
  - Idempotent; an address already blocked is left alone (O(refresh=true) restarts its expiry instead).
  - Guard rails, loopback, link-local and the unspecified address can never be blocked, nor anything overlapping O(protect)
    (put the bastion and monitoring networks there); O(max_addresses) bounds one run.
  - With O(denylist_file) the same addresses are also kept in a JSON denylist the application reads
    (an object whose C(blocked) list holds C(address), C(added), C(expires), C(reason)),
    written atomically, expired entries pruned, followed by O(denylist_reload_command).
options:
  addresses:
    description: IP addresses or CIDR networks, IPv4 or IPv6.
    type: list
    elements: str
    required: true
  state:
    description: V(present) blocks, V(absent) unblocks.
    type: str
    choices: [present, absent]
    default: present
  timeout:
    description: How long a block lasts (seconds or a duration such as V(30m), V(1h), V(7d)); V(0) blocks until removed.
    type: str
    default: 1h
  refresh:
    description: For an address already blocked, restart its expiry with O(timeout) (reports a change).
    type: bool
    default: false
  nftables:
    description: Manage the nftables sets. V(false) only maintains O(denylist_file).
    type: bool
    default: true
  netns:
    description:
      - Run C(nft) inside this network namespace (C(ip netns exec)), for example a container's or a test's.
      - A name C(ip netns list) shows (a file under C(/run/netns)); anything else is refused before C(nft) runs.
    type: str
  table:
    description: nftables table name.
    type: str
    default: sre_blocklist
  set_v4:
    description: Set name for IPv4 addresses.
    type: str
    default: blocked_v4
  set_v6:
    description: Set name for IPv6 addresses.
    type: str
    default: blocked_v6
  chain:
    description: Input chain created with the table.
    type: str
    default: input
  priority:
    description: Hook priority of the chain (lower runs earlier; V(-5) before the usual filter chains).
    type: int
    default: -5
  verdict:
    description: What happens to a packet from a blocked address. V(reject) answers at once; V(drop) is silent.
    type: str
    choices: [drop, reject]
    default: drop
  protect:
    description:
      - Networks that must never be blocked (loopback and link-local always are).
      - With O(nftables=false) (the application denylist alone, which cannot cut the host off its network) only
        C(127.0.0.1), C(::1) and the unspecified addresses are always protected, so other loopback networks can be
        denied to the application.
    type: list
    elements: str
    default: []
  max_addresses:
    description: At most this many addresses per run.
    type: int
    default: 256
  denylist_file:
    description: Also keep the addresses in this JSON file for the application.
    type: path
  denylist_reload_command:
    description: Command (argv, no shell) run after O(denylist_file) changed, such as V([systemctl, reload, residency-scheduler-backend]).
    type: list
    elements: str
  reason:
    description: Recorded with each denylist entry.
    type: str
    default: ""
notes:
  - Needs the C(nft) binary (Debian package C(nftables)) and CAP_NET_ADMIN (run as root / C(become)).
  - Supports check mode (lists what would be added or removed) and C(--diff) (the blocked addresses before and after).
"""

EXAMPLES = r"""
- name: Block the credential-stuffing sources for a day
  become: true
  sre.runbooks.ip_blocklist:
    addresses: "{{ attack_sources }}"
    timeout: 24h
    protect: [10.0.0.0/8]
    verdict: drop

- name: Unblock a false positive
  become: true
  sre.runbooks.ip_blocklist:
    addresses: [203.0.113.7]
    state: absent

- name: App-level denylist only (the API's own middleware reads it)
  sre.runbooks.ip_blocklist:
    addresses: [198.51.100.0/24]
    nftables: false
    denylist_file: /etc/residency-scheduler/denylist.json
    denylist_reload_command: [systemctl, reload, residency-scheduler-backend]
    reason: INC-42 FailedAuthenticationSpike
"""

RETURN = r"""
added:
  description: Addresses newly blocked.
  returned: always
  type: list
  elements: str
removed:
  description: Addresses unblocked.
  returned: always
  type: list
  elements: str
refreshed:
  description: Addresses whose expiry was restarted.
  returned: always
  type: list
  elements: str
elements:
  description: The sets' elements after the run, address → C(timeout) and C(expires) in seconds (V(null) without expiry).
  returned: when O(nftables=true)
  type: dict
  sample: {"203.0.113.7": {"timeout": 86400, "expires": 86399}}
commands:
  description: The nft batch applied (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
created_table:
  description: The table, sets and chain were created by this run.
  returned: when created
  type: bool
denylist:
  description: Addresses in O(denylist_file) after the run.
  returned: when O(denylist_file) is set
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._ip_blocklist import BlocklistError, run
from ansible_collections.sre.runbooks.plugins.module_utils._postgres import parse_seconds

NETNS_DIR = "/run/netns"  # where ip netns add puts named namespaces


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "addresses": {"type": "list", "elements": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "timeout": {"type": "str", "default": "1h"},
            "refresh": {"type": "bool", "default": False},
            "nftables": {"type": "bool", "default": True},
            "netns": {"type": "str"},
            "table": {"type": "str", "default": "sre_blocklist"},
            "set_v4": {"type": "str", "default": "blocked_v4"},
            "set_v6": {"type": "str", "default": "blocked_v6"},
            "chain": {"type": "str", "default": "input"},
            "priority": {"type": "int", "default": -5},
            "verdict": {"type": "str", "default": "drop", "choices": ["drop", "reject"]},
            "protect": {"type": "list", "elements": "str", "default": []},
            "max_addresses": {"type": "int", "default": 256},
            "denylist_file": {"type": "path"},
            "denylist_reload_command": {"type": "list", "elements": "str"},
            "reason": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    params = dict(module.params)
    try:
        timeout = parse_seconds(params["timeout"], "timeout")
    except ValueError as exc:
        module.fail_json(msg=str(exc), option="timeout")
    params["timeout"] = int(timeout)
    if 0 < timeout < 1:
        module.fail_json(msg="timeout: at least 1 second (or 0 for no expiry)", option="timeout")
    if not params["addresses"]:
        module.fail_json(msg="addresses: give at least one address", option="addresses")
    if not params["nftables"] and not params["denylist_file"]:
        module.fail_json(msg="denylist_file: with nftables=false there is nothing to manage without denylist_file", option="denylist_file")
    if params["nftables"] and not module.get_bin_path("nft"):
        module.fail_json(msg="nftables: the nft binary is not installed (Debian package nftables)", option="nftables")
    for name in ("table", "set_v4", "set_v6", "chain"):
        if not params[name].replace("_", "").isalnum():
            module.fail_json(msg=f"{name}: letters, digits and _ only, got {params[name]!r}", option=name)
    netns = params["netns"]
    if netns is not None and (not netns or netns in (".", "..") or not netns.replace("_", "").replace("-", "").replace(".", "").isalnum()):
        module.fail_json(msg=f"netns: a network namespace name (letters, digits, '.', '-' and '_'), got {netns!r}", option="netns")
    params["family"] = "inet"  # one table for IPv4 and IPv6

    def runner(argv, stdin):
        if netns and not os.path.exists(os.path.join(NETNS_DIR, netns)):  # checked when nft is first needed, after the inputs
            module.fail_json(msg=f"netns: no network namespace {netns!r} (ip netns list shows those in {NETNS_DIR})", option="netns")
        return module.run_command(argv, data=stdin, binary_data=False, check_rc=False)

    try:
        result = run(params, runner, module.check_mode)
    except BlocklistError as exc:
        module.fail_json(msg=str(exc), **({"option": exc.option} if exc.option else {}))
    if not module._diff:  # pylint: disable=protected-access
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
