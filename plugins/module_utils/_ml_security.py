# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Security findings of the Heart Disease runbook (Security Incidents / Security Recovery), as plain data.

- :func:`exposed_secrets`: which configured API keys (and whether the JWT signing secret) appear in files anyone
  can read. Only key ids (``hdk_`` + 8 hex, what the API logs) and list positions come back, never a secret.
- :func:`suspicious_networks`: the networks to block, from the authentication failures per source address and the
  successful uses of a leaked key per source address, leaving out trusted networks.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Any, Iterable

KEY_ID_LENGTH = 12


def key_id(key: str, length: int = KEY_ID_LENGTH) -> str:
    """The part of an API key that is safe to log and to record."""
    return str(key)[:length]


def _text(item: dict[str, Any]) -> str:
    if "content" in item and item.get("encoding") == "base64":
        try:
            return base64.b64decode(str(item["content"])).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            return ""
    return str(item.get("content") or "")


def exposed_secrets(auth: dict[str, Any], files: Iterable[dict[str, Any]], key_id_length: int = KEY_ID_LENGTH) -> dict[str, Any]:
    """Find the configured secrets in ``files`` (slurp results: ``source``/``path``, ``content``, ``encoding``).

    Returns ``exposed_keys`` (each ``index``, ``key_id``, ``files``), ``jwt_secret_files``, ``files`` (paths holding any
    secret) and ``exposed`` (whether anything was found).
    """
    if not isinstance(auth, dict):
        raise ValueError(f"expected the api.auth mapping of the configuration, got {type(auth).__name__}")
    keys = [str(k) for k in auth.get("api_keys") or []]
    secret = str(auth.get("secret_key") or "")
    found_keys: dict[int, list[str]] = {}
    jwt_files: list[str] = []
    for item in files or []:
        if not isinstance(item, dict):
            continue
        path = str(item.get("source") or item.get("path") or "?")
        text = _text(item)
        for index, key in enumerate(keys):
            if len(key) >= 16 and key in text:
                found_keys.setdefault(index, []).append(path)
        if len(secret) >= 16 and secret in text:
            jwt_files.append(path)
    exposed_keys_list = [{"index": index, "key_id": key_id(keys[index], key_id_length), "files": paths}
                         for index, paths in sorted(found_keys.items())]
    paths = sorted({p for entry in exposed_keys_list for p in entry["files"]} | set(jwt_files))
    return {"exposed_keys": exposed_keys_list, "jwt_secret_files": jwt_files, "files": paths, "exposed": bool(paths)}


def _network(address: str, prefix_v4: int, prefix_v6: int):
    ip = ipaddress.ip_address(str(address).strip())
    prefix = prefix_v4 if ip.version == 4 else prefix_v6
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


def _counts(rows: Iterable[dict[str, Any]] | dict[str, Any] | None, key_field: str, count_field: str) -> dict[str, int]:
    """``[{key, count}]`` (log_query's ``auth.by_ip`` and ``groups``) or ``{ip: count}`` → ``{ip: count}``."""
    if isinstance(rows, dict):
        return {str(k): int(v) for k, v in rows.items()}
    out: dict[str, int] = {}
    for row in rows or []:
        if isinstance(row, dict) and row.get(key_field) not in (None, "", "-"):
            out[str(row[key_field])] = out.get(str(row[key_field]), 0) + int(row.get(count_field) or 0)
    return out


def suspicious_networks(failures_by_ip: Any, leaked_use_by_ip: Any = None, trusted: Iterable[str] = (), prefix_v4: int = 24,
                        prefix_v6: int = 64, min_failures: int = 5) -> list[dict[str, Any]]:
    """Networks (``prefix_v4`` / ``prefix_v6``) to block, largest activity first.

    A network qualifies when its sources failed to authenticate at least ``min_failures`` times together, or when any of
    its sources used a leaked key. A network overlapping a ``trusted`` one is never returned; it is listed by the caller
    from ``skipped``. Each entry: ``network``, ``failures``, ``leaked_key_uses``, ``addresses``, ``reasons``.
    """
    failures = _counts(failures_by_ip, "key", "count")
    uses = _counts(leaked_use_by_ip, "key", "count")
    guards = [ipaddress.ip_network(str(t), strict=False) for t in trusted or []]
    nets: dict[Any, dict[str, Any]] = {}
    for source, table in (("failures", failures), ("leaked_key_uses", uses)):
        for address, count in table.items():
            try:
                net = _network(address, int(prefix_v4), int(prefix_v6))
            except ValueError:
                continue
            entry = nets.setdefault(net, {"network": str(net), "failures": 0, "leaked_key_uses": 0, "addresses": set()})
            entry[source] += count
            entry["addresses"].add(address)
    out = []
    for net, entry in nets.items():
        reasons = []
        if entry["failures"] >= int(min_failures):
            reasons.append(f"{entry['failures']} authentication failures")
        if entry["leaked_key_uses"]:
            reasons.append(f"{entry['leaked_key_uses']} requests with a leaked key")
        if not reasons:
            continue
        trusted_by = [str(g) for g in guards if g.version == net.version and g.overlaps(net)]
        out.append({**entry, "addresses": sorted(entry["addresses"]), "reasons": reasons, "trusted": trusted_by})
    out.sort(key=lambda e: (-(e["failures"] + e["leaked_key_uses"]), e["network"]))
    return out
