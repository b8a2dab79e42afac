# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The security runbooks' decisions, from the evidence the diagnostic modules gathered.

- ``auth_attack``: FailedAuthenticationSpike. Password spray (one address, many accounts: block the address)
  or credential stuffing (many addresses, one account: secure the account, and block only the addresses that
  are clearly attackers), never touching protected networks or service accounts, bounded per run.
- ``suspicious_sources``: SuspiciousActivityDetected. Each flagged request classified (SQL injection, path
  traversal, script injection, authentication attack); a source is confirmed malicious when its requests
  carry attack payloads often enough, else it is flagged for review.
- ``export_review``: LargeDataExport. Who exported how much, and whether the export policy authorises it.

Plain Python, no Ansible: the filters in ``plugins/filter/security.py`` call these.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

# Networks never blocked whatever the evidence: loopback, link-local, private and unique-local ranges.
INTERNAL_NETWORKS = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
                     "::1/128", "fc00::/7", "fe80::/10")

# What a flagged request carries (decoded request line or user agent), by class.
PAYLOAD_PATTERNS = {
    "sql_injection": r"union\s+(all\s+)?select|'\s*or\s+'?\d+'?\s*=\s*'?\d+|;\s*(drop|delete|insert|update)\s+|--\s*$|\bsleep\s*\(|information_schema",
    "path_traversal": r"\.\./|\.\.\\|%2e%2e|/etc/(passwd|shadow)|\\windows\\",
    "script_injection": r"<\s*script|javascript:|on(error|load)\s*=|<\s*iframe|<\s*img[^>]+src",
}
AUTH_REASONS = {"password_spray": "password_spray", "credential_stuffing": "credential_stuffing"}


class SecurityError(ValueError):
    """Evidence or settings that cannot be judged."""


def networks(values: Iterable[str], what: str) -> list:
    out = []
    for value in values or []:
        try:
            out.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise SecurityError(f"{what}: {value!r} is not an IP address or network") from None
    return out


def protected_by(address: str, protect: list) -> str | None:
    """The protected network ADDRESS lies in, "not an address" when it is none, else None."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    for net in protect:
        if ip.version == net.version and ip in net:
            return str(net)
    return None


def _guard_addresses(candidates: list[tuple[str, int]], protect: list, max_addresses: int) -> dict[str, Any]:
    """Split (address, failures) candidates into what to block (most active first, at most max_addresses),
    what a protected network covers, and what the bound left out."""
    block, protected, over = [], [], []
    for address, count in sorted(candidates, key=lambda c: (-c[1], c[0])):
        why = protected_by(address, protect)
        if why:
            protected.append({"address": address, "failures": count, "protected_by": why})
        elif len(block) < max_addresses:
            block.append(address)
        else:
            over.append(address)
    return {"block": block, "protected": protected, "over_limit": over}


def _merge_rows(per_host: list[dict], key: str, partner: str) -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for item in per_host:
        for row in ((item.get("auth") or {}).get(key) or []):
            fresh = {"key": row["key"], "count": 0, partner: set(), "hosts": [], "first_seen": row.get("first_seen"),
                     "last_seen": row.get("last_seen")}
            entry = merged.setdefault(row["key"], fresh)
            entry["count"] += int(row.get("count") or 0)
            entry[partner].update(row.get(f"{partner}_sample") or [])
            entry[f"{partner}_counted"] = max(entry.get(f"{partner}_counted", 0), int(row.get(partner) or 0))
            entry["hosts"].append(item.get("host"))
            for field, pick in (("first_seen", min), ("last_seen", max)):
                if row.get(field):
                    entry[field] = pick(v for v in (entry[field], row[field]) if v)
    return merged


def auth_attack(per_host: list[dict], protect: Iterable[str] = (), service_accounts: Iterable[str] = (),
                max_addresses: int = 20, max_accounts: int = 5, min_failures: int = 3) -> dict[str, Any]:
    """FailedAuthenticationSpike: the attack pattern and what to do about it.

    ``per_host`` is ``[{host, auth}]`` with each host's ``log_query`` ``mode=auth`` analysis (``auth`` key of its
    result). Spray: the addresses that tried many accounts (and machine-regular ones) are blocked. Stuffing: the
    targeted accounts are secured, and an address is blocked only when every account it tried is a targeted one and
    it failed at least ``min_failures`` times. Protected networks (``protect`` plus the internal ranges) are never
    blocked; ``service_accounts`` are never locked; at most ``max_addresses`` and ``max_accounts`` per run.
    """
    if max_addresses < 0 or max_accounts < 0 or min_failures < 1:
        raise SecurityError("max_addresses and max_accounts must be at least 0, min_failures at least 1")
    guard = networks(list(protect) + list(INTERNAL_NETWORKS), "protect")
    services = {str(s).lower() for s in service_accounts or []}
    indicators = []
    for item in per_host:
        for indicator in ((item.get("auth") or {}).get("indicators") or []):
            indicators.append({**indicator, "host": item.get("host")})
    by_ip = _merge_rows(per_host, "by_ip", "accounts")
    by_account = _merge_rows(per_host, "by_account", "ips")
    spray_ips = sorted({i["ip"] for i in indicators if i["indicator"] == "same_ip_many_accounts"})
    regular_ips = sorted({i["ip"] for i in indicators if i["indicator"] == "machine_regular_timing" and "ip" in i})
    stuffed = sorted({i["account"] for i in indicators if i["indicator"] == "distributed_ips_same_account"}
                     | {i["account"] for i in indicators if i["indicator"] == "machine_regular_timing" and "account" in i})
    pattern = ("password_spray_and_credential_stuffing" if spray_ips and stuffed else "password_spray" if spray_ips
               else "credential_stuffing" if stuffed else "automated_attempts" if regular_ips else "none")
    failures = {ip: row["count"] for ip, row in by_ip.items()}
    candidates: dict[str, str] = {}
    for ip in spray_ips:
        candidates[ip] = "tried many accounts (password spray)"
    for ip in regular_ips:
        candidates.setdefault(ip, "machine-regular timing (automated)")
    stuffing_sources = []
    for ip, row in by_ip.items():
        tried = {a for a in row["accounts"] if a}
        if stuffed and tried and tried <= set(stuffed) and row["count"] >= min_failures:
            stuffing_sources.append(ip)
            candidates.setdefault(ip, f"failed {row['count']} times, only on the targeted account(s)")
    guarded = _guard_addresses([(ip, failures.get(ip, 0)) for ip in candidates], guard, max_addresses)
    accounts, skipped_service, over_accounts = [], [], []
    for account in sorted(stuffed, key=lambda a: (-by_account.get(a, {}).get("count", 0), a)):
        if account.lower() in services:
            skipped_service.append(account)
        elif len(accounts) < max_accounts:
            accounts.append(account)
        else:
            over_accounts.append(account)
    stuffing_unblocked = sorted(ip for ip in (set(by_ip) if stuffed else set()) - set(guarded["block"])
                                if by_ip[ip]["accounts"] and by_ip[ip]["accounts"] <= set(stuffed))
    reasons = []
    if spray_ips:
        reasons.append(f"password spray from {', '.join(spray_ips)}: one address trying many accounts")
    if stuffed:
        reasons.append(f"credential stuffing against {', '.join(stuffed)}: one account tried from many addresses")
    if regular_ips and not spray_ips:
        reasons.append(f"machine-regular timing from {', '.join(regular_ips)}")
    return {
        "pattern": pattern,
        "cause": " and ".join(reasons) if reasons else "no indicator of attack (scattered failures, such as mistyped passwords)",
        "failures": sum(int((item.get("auth") or {}).get("failures") or 0) for item in per_host),
        "spray_ips": spray_ips,
        "regular_ips": regular_ips,
        "stuffed_accounts": stuffed,
        "stuffing_sources": sorted(stuffing_sources),
        "block": guarded["block"],
        "block_reasons": {ip: candidates[ip] for ip in guarded["block"]},
        "protected": guarded["protected"],
        "over_limit_addresses": guarded["over_limit"],
        "unblocked_stuffing_addresses": len(stuffing_unblocked),
        "accounts": accounts,
        "service_accounts_skipped": skipped_service,
        "over_limit_accounts": over_accounts,
        "indicators": indicators,
        "by_ip": sorted(({**row, "accounts": max(len(row["accounts"]), row.get("accounts_counted", 0))} for row in by_ip.values()),
                        key=lambda r: (-r["count"], r["key"]))[:20],
        "by_account": sorted(({**row, "ips": max(len(row["ips"]), row.get("ips_counted", 0))} for row in by_account.values()),
                             key=lambda r: (-r["count"], r["key"]))[:20],
    }


def classify_request(record: dict, patterns: dict[str, str] | None = None) -> list[str]:
    """The attack classes of one flagged record (its ``reason``, request line and user agent)."""
    fields = record.get("fields") or {}
    reason = str(fields.get("reason") or "")
    if reason in AUTH_REASONS:
        return [AUTH_REASONS[reason]]
    text = " ".join(str(fields.get(k) or "") for k in ("request", "path", "user_agent")) or str(record.get("message") or "")
    classes = [name for name, regex in (patterns or PAYLOAD_PATTERNS).items() if re.search(regex, text, re.IGNORECASE)]
    return classes or ["unclassified"]


def suspicious_sources(per_host: list[dict], protect: Iterable[str] = (), service_accounts: Iterable[str] = (),
                       min_events: int = 3, max_addresses: int = 20, max_accounts: int = 5,
                       patterns: dict[str, str] | None = None) -> dict[str, Any]:
    """SuspiciousActivityDetected: classify each flagged record and decide per source.

    ``per_host`` is ``[{host, records}]`` (``log_query`` records of ``event=suspicious_activity``). A source is
    confirmed malicious when at least ``min_events`` of its requests carry an attack payload (or it ran a spray or
    stuffing attack): it is blocked, and accounts it acted as are locked. Fewer is uncertain: flagged for review.
    """
    guard = networks(list(protect) + list(INTERNAL_NETWORKS), "protect")
    services = {str(s).lower() for s in service_accounts or []}
    sources: dict[str, dict] = {}
    classes: dict[str, int] = {}
    for item in per_host:
        for record in item.get("records") or []:
            fields = record.get("fields") or {}
            ip = str(fields.get("ip") or "unknown")
            found = classify_request(record, patterns)
            src = sources.setdefault(ip, {"ip": ip, "events": 0, "classes": {}, "users": set(), "hosts": set(),
                                          "first_seen": record.get("timestamp"), "last_seen": record.get("timestamp"), "samples": []})
            src["events"] += 1
            src["hosts"].add(item.get("host"))
            for name in found:
                src["classes"][name] = src["classes"].get(name, 0) + 1
                classes[name] = classes.get(name, 0) + 1
            if fields.get("user") and found[0] not in AUTH_REASONS:
                src["users"].add(str(fields["user"]))
            sample = str(fields.get("request") or fields.get("path") or record.get("message") or "")[:200]
            if sample and sample not in src["samples"] and len(src["samples"]) < 5:
                src["samples"].append(sample)
            for field, pick in (("first_seen", min), ("last_seen", max)):
                if record.get("timestamp"):
                    src[field] = pick(v for v in (src[field], record["timestamp"]) if v)
    confirmed, review = [], []
    for src in sources.values():
        attacks = sum(n for name, n in src["classes"].items() if name != "unclassified")
        src["confirmed"] = attacks >= min_events
        src["verdict"] = "confirmed malicious" if src["confirmed"] else "uncertain"
        (confirmed if src["confirmed"] else review).append(src)
    guarded = _guard_addresses([(s["ip"], s["events"]) for s in confirmed], guard, max_addresses)
    users = sorted({u for s in confirmed for u in s["users"]})
    lock = [u for u in users if u.lower() not in services][:max_accounts]
    payload = sorted(name for name in classes if name not in AUTH_REASONS and name != "unclassified")
    cause = []
    if payload:
        cause.append("attack payloads in requests (" + ", ".join(f"{n}: {classes[n]}" for n in payload) + ")")
    if any(name in AUTH_REASONS for name in classes):
        cause.append("authentication attack (" + ", ".join(f"{n}: {classes[n]}" for n in classes if n in AUTH_REASONS) + ")")
    if classes.get("unclassified"):
        cause.append(f"{classes['unclassified']} unclassified event(s)")
    rows = sorted(sources.values(), key=lambda s: (-s["events"], s["ip"]))
    return {
        "cause": "; ".join(cause) or "no suspicious activity logged in the window",
        "classes": classes,
        "payload_classes": payload,
        "auth_attack": any(name in AUTH_REASONS for name in classes),
        "events": sum(s["events"] for s in rows),
        "sources": [{**s, "users": sorted(s["users"]), "hosts": sorted(h for h in s["hosts"] if h)} for s in rows][:20],
        "confirmed": sorted(s["ip"] for s in confirmed),
        "review": sorted(s["ip"] for s in review),
        "block": guarded["block"],
        "protected": guarded["protected"],
        "over_limit_addresses": guarded["over_limit"],
        "lock": lock,
        "service_accounts_skipped": [u for u in users if u.lower() in services],
    }


def export_review(exports: dict[str, Any], accounts: list[dict], policy: dict[str, Any]) -> dict[str, Any]:
    """LargeDataExport: each exporting user (``exports``: user id → records in the window) judged by the policy.

    ``accounts`` are the users' rows (``id``, ``account``, ``role``, ``locked``); ``policy`` has
    ``authorised_roles``, ``authorised_users`` (a list of usernames or ids, or a mapping of them to the
    justification) and ``threshold`` (records). Authorised: justification documented. Unauthorised: contain.
    """
    roles = [str(r) for r in policy.get("authorised_roles") or []]
    allowed = policy.get("authorised_users") or {}
    if isinstance(allowed, list):
        allowed = {str(u): "listed as authorised for bulk export" for u in allowed}
    threshold = float(policy.get("threshold", 1000))
    by_id = {str(a.get("id")): a for a in accounts or []}
    users = []
    for user_id, records in sorted((exports or {}).items(), key=lambda kv: -(kv[1] or 0)):
        if records is None or float(records) <= threshold:
            continue
        account = by_id.get(str(user_id), {})
        name = account.get("username") or account.get("account")
        role = account.get("role")
        if not account:
            authorised, basis = False, "the user is not in the accounts table"
        elif str(user_id) in allowed or (name and name in allowed):
            authorised, basis = True, str(allowed.get(str(user_id)) or allowed.get(name))
        elif role in roles:
            authorised, basis = True, f"role {role} may export in bulk (policy)"
        else:
            authorised, basis = False, f"role {role or 'unknown'} is not authorised for bulk export ({', '.join(roles) or 'no role'} may)"
        users.append({"user_id": str(user_id), "username": name, "role": role, "records": round(float(records)),
                      "authorised": authorised, "basis": basis, "locked": account.get("locked")})
    unauthorised = [u for u in users if not u["authorised"]]
    cause = "; ".join(f"{u['username'] or 'user ' + u['user_id']} ({u['role'] or 'unknown role'}) exported {u['records']} records: "
                      f"{'authorised' if u['authorised'] else 'NOT authorised'} ({u['basis']})" for u in users)
    return {
        "users": users,
        "unauthorised": unauthorised,
        # by id: the alert and the metrics name users by id, and an id is unique
        "contain": [u["user_id"] for u in unauthorised],
        "authorised": [u for u in users if u["authorised"]],
        "cause": cause or f"no user exported more than {threshold:.0f} records in the window",
    }
