# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Block addresses in nftables sets with per-element expiry, and optionally in an application denylist file.

Layout created on first use (one ``nft -f`` batch, so all or nothing)::

    table inet sre_blocklist {
      set blocked_v4 { type ipv4_addr; flags interval, timeout; }
      set blocked_v6 { type ipv6_addr; flags interval, timeout; }
      chain input { type filter hook input priority -5; policy accept;
                    ip saddr @blocked_v4 drop; ip6 saddr @blocked_v6 drop }
    }

Every change of a run is one ``nft -f -`` transaction: the kernel applies all of it or none.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from ansible_collections.sre.runbooks.plugins.module_utils._files import atomic_write as write_file_atomically

# Never blockable, whatever the input: locking out loopback / link-local / the unspecified address breaks the host.
ALWAYS_PROTECTED = ["127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128", "169.254.0.0/16", "fe80::/10"]
# An application denylist alone (nftables=false) cannot cut the host off its own network; only the addresses the host's
# own local clients use (health checks, the monitoring agent, the reverse proxy) stay unblockable there.
DENYLIST_ONLY_PROTECTED = ["127.0.0.1/32", "::1/128", "0.0.0.0/32", "::/128"]

Runner = Callable[[list[str], Optional[str]], tuple[int, str, str]]


class BlocklistError(Exception):
    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


def normalise(values: list[str], option: str = "addresses") -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise BlocklistError(f"{option}: {value!r} is not an IP address or CIDR network", option=option) from None
    return list(dict.fromkeys(nets))


def text(net) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def check_protected(nets, protect: list[str], always: list[str] | None = None) -> None:
    guards = normalise((ALWAYS_PROTECTED if always is None else always) + list(protect), "protect")
    for net in nets:
        for guard in guards:
            if net.version == guard.version and net.overlaps(guard):
                raise BlocklistError(f"addresses: {text(net)} overlaps the protected network {text(guard)}; nothing was changed",
                                     option="addresses")


class Nft:
    """nft through argv (optionally inside ``ip netns exec``), JSON output parsed."""

    def __init__(self, run: Runner, netns: str | None, family: str, table: str, sets: dict[int, str], chain: str,
                 verdict: str, priority: int):
        self.run = run
        self.prefix = ["ip", "netns", "exec", netns, "nft"] if netns else ["nft"]
        self.family, self.table, self.sets, self.chain = family, table, sets, chain
        self.verdict, self.priority = verdict, priority

    def _nft(self, args: list[str], stdin: str | None = None) -> str:
        rc, out, err = self.run(self.prefix + args, stdin)
        if rc != 0:
            raise BlocklistError(f"nft {' '.join(args)} failed ({rc}): {err.strip()[-400:]}")
        return out

    def table_exists(self) -> bool:
        rc, out, _err = self.run(self.prefix + ["-j", "list", "tables", self.family], None)
        if rc != 0:
            return False
        items = json.loads(out or "{}").get("nftables", [])
        return any(item.get("table", {}).get("name") == self.table for item in items)

    def elements(self) -> dict[str, dict[str, Any]]:
        """Current elements of both sets: ``{address: {"timeout": s or None, "expires": s or None}}``."""
        found: dict[str, dict[str, Any]] = {}
        for name in self.sets.values():
            out = self._nft(["-j", "list", "set", self.family, self.table, name])
            for item in json.loads(out).get("nftables", []):
                for elem in (item.get("set") or {}).get("elem", []) or []:
                    info: dict[str, Any] = {"timeout": None, "expires": None}
                    if isinstance(elem, dict) and "elem" in elem:
                        info["timeout"] = elem["elem"].get("timeout")
                        info["expires"] = elem["elem"].get("expires")
                        elem = elem["elem"]["val"]
                    found[_elem_text(elem)] = info
        return found

    def setup_script(self) -> str:
        lines = [f"add table {self.family} {self.table}"]
        for version, name in self.sets.items():
            kind = "ipv4_addr" if version == 4 else "ipv6_addr"
            lines.append(f"add set {self.family} {self.table} {name} {{ type {kind}; flags interval, timeout; }}")
        lines.append(f"add chain {self.family} {self.table} {self.chain} {{ type filter hook input priority {self.priority}; policy accept; }}")
        for version, name in self.sets.items():
            match = "ip saddr" if version == 4 else "ip6 saddr"
            lines.append(f"add rule {self.family} {self.table} {self.chain} {match} @{name} {self.verdict}")
        return "\n".join(lines) + "\n"

    def apply(self, script: str) -> None:
        self._nft(["-f", "-"], script)


def _elem_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    if isinstance(value, dict) and "range" in value:
        return "-".join(value["range"])
    return json.dumps(value)


def seconds_text(seconds: int) -> str:
    return f"{int(seconds)}s"


# -- the application denylist ---------------------------------------------------------------------

def read_denylist(path: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise BlocklistError(f"denylist_file: {path} is not valid JSON: {exc}", option="denylist_file") from None
    entries = data.get("blocked") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise BlocklistError(f"denylist_file: {path} must hold {{\"blocked\": [...]}}", option="denylist_file")
    return entries


def write_denylist(path: str, entries: list[dict[str, Any]], mode: int = 0o644) -> None:
    write_file_atomically(path, json.dumps({"blocked": entries}, indent=2) + "\n", mode)


def denylist_plan(entries: list[dict[str, Any]], nets, state: str, timeout: int | None, reason: str,
                  now: datetime) -> tuple[list[dict[str, Any]], bool]:
    """New entries: expired ones pruned, ours added or removed. Returns (entries, changed)."""
    live = []
    for entry in entries:
        expires = entry.get("expires")
        if expires and datetime.fromisoformat(str(expires).replace("Z", "+00:00")) <= now:
            continue
        live.append(entry)
    wanted = {text(n) for n in nets}
    if state == "absent":
        result = [e for e in live if e.get("address") not in wanted]
    else:
        have = {e.get("address") for e in live}
        result = list(live)
        for address in sorted(wanted - have):
            entry = {"address": address, "added": now.isoformat(timespec="seconds")}
            if timeout:
                entry["expires"] = (now + timedelta(seconds=timeout)).isoformat(timespec="seconds")
            if reason:
                entry["reason"] = reason
            result.append(entry)
    return result, result != entries


# -- the run ----------------------------------------------------------------------------------------

def run(o: dict[str, Any], runner: Runner, check_mode: bool) -> dict[str, Any]:
    nets = normalise(o["addresses"])
    if o["state"] == "present":
        check_protected(nets, o["protect"], None if o["nftables"] else DENYLIST_ONLY_PROTECTED)
        if len(nets) > o["max_addresses"]:
            raise BlocklistError(f"max_addresses: {len(nets)} addresses, more than max_addresses={o['max_addresses']}; nothing was changed",
                                 option="max_addresses")
    result: dict[str, Any] = {"changed": False, "added": [], "removed": [], "refreshed": [], "commands": []}
    script_lines: list[str] = []
    before: dict[str, dict[str, Any]] = {}
    if o["nftables"]:
        nft = Nft(runner, o["netns"], o["family"], o["table"], {4: o["set_v4"], 6: o["set_v6"]}, o["chain"], o["verdict"], o["priority"])
        exists = nft.table_exists()
        if not exists and o["state"] == "present":
            script_lines.append(nft.setup_script().rstrip("\n"))
            result["created_table"] = True
        before = nft.elements() if exists else {}
        for net in nets:
            address = text(net)
            set_name = nft.sets[net.version]
            present = address in before
            timeout = f" timeout {seconds_text(o['timeout'])}" if o["timeout"] else ""
            if o["state"] == "present" and not present:
                script_lines.append(f"add element {o['family']} {o['table']} {set_name} {{ {address}{timeout} }}")
                result["added"].append(address)
            elif o["state"] == "present" and present and o["refresh"] and o["timeout"]:
                script_lines.append(f"delete element {o['family']} {o['table']} {set_name} {{ {address} }}")
                script_lines.append(f"add element {o['family']} {o['table']} {set_name} {{ {address}{timeout} }}")
                result["refreshed"].append(address)
            elif o["state"] == "absent" and present:
                script_lines.append(f"delete element {o['family']} {o['table']} {set_name} {{ {address} }}")
                result["removed"].append(address)
        if script_lines and not check_mode:
            nft.apply("\n".join(script_lines) + "\n")
        result["commands"] = script_lines
        after = nft.elements() if (script_lines and not check_mode) else None
        result["elements"] = after if after is not None else before
    deny_changed = False
    if o["denylist_file"]:
        now = datetime.now(timezone.utc)
        entries = read_denylist(o["denylist_file"])
        new_entries, deny_changed = denylist_plan(entries, nets, o["state"], o["timeout"], o["reason"], now)
        if deny_changed and not check_mode:
            write_denylist(o["denylist_file"], new_entries)
            if o["denylist_reload_command"]:
                rc, _out, err = runner(o["denylist_reload_command"], None)
                if rc != 0:
                    raise BlocklistError(f"denylist_reload_command: exited {rc}: {err.strip()[-300:]}", option="denylist_reload_command")
        result["denylist"] = [e.get("address") for e in new_entries]
        result["denylist_before"] = [e.get("address") for e in entries]
    result["changed"] = bool(script_lines) or deny_changed
    wanted = sorted(text(n) for n in nets)
    before_lines = sorted(before) if o["nftables"] else []
    if o["state"] == "present":
        after_lines = sorted(set(before_lines) | set(wanted)) if o["nftables"] else []
    else:
        after_lines = sorted(set(before_lines) - set(wanted))
    result["diff"] = {
        "before": "".join(f"{a}\n" for a in before_lines) + ("".join(f"denylist {a}\n" for a in result.get("denylist_before", []))),
        "after": "".join(f"{a}\n" for a in after_lines) + ("".join(f"denylist {a}\n" for a in result.get("denylist", []))),
    }
    verb = "would " if check_mode else ""
    result["msg"] = (f"{verb}block {len(result['added'])}, refresh {len(result['refreshed'])}, unblock {len(result['removed'])}"
                     if result["changed"] else "nothing to change")
    return result
