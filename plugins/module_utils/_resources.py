# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the resource runbooks (SlowResponseTime, HighCPUUsage, LowMemory): which hosts an alert names, and
what the evidence says the cause is. Pure functions over the diagnostics' results (filters in plugins/filter/resources.py)."""

from __future__ import annotations

import math
from statistics import median
from typing import Any
from urllib.parse import urlsplit

_HOST_LABELS = ("host", "hostname", "nodename")


def _netloc(url: Any) -> str:
    try:
        return urlsplit(str(url)).netloc if url else ""
    except ValueError:
        return ""


def _host_of(instance: str, candidates: list[str], hostvars: dict[str, Any], url_var: str) -> str | None:
    """The inventory host an ``instance`` label (``host:port``) belongs to: the host whose URL (``hostvars[host]``, a
    URL or a dict with ``url_var``) has that address, else the host named like the instance's host part."""
    for host in candidates:
        url = hostvars.get(host)
        if isinstance(url, dict) or hasattr(url, "get"):
            url = url.get(url_var)
        if instance and _netloc(url) == instance:
            return host
    name = instance.rsplit(":", 1)[0] if instance else ""
    return name if name in candidates else None


def alert_hosts(alert: Any, candidates: Any, hostvars: Any = None, url_var: str = "scheduler_base_url") -> list[str]:
    """The candidates the alert names; all of them when it names none (or names none of them)."""
    candidates = [str(h) for h in (candidates or [])]
    labels = (alert or {}).get("labels") or {} if isinstance(alert, dict) else {}
    named: list[str] = []
    for key in _HOST_LABELS:
        value = str(labels.get(key) or "")
        if value in candidates and value not in named:
            named.append(value)
    host = _host_of(str(labels.get("instance") or ""), candidates, dict(hostvars or {}), url_var)
    if host and host not in named:
        named.append(host)
    return named or candidates


def by_host(values: Any, candidates: Any, hostvars: Any = None, url_var: str = "scheduler_base_url") -> dict[str, Any]:
    """``{instance: value}`` (prometheus_query's ``values`` with ``by: instance``) as ``{inventory host: value}``."""
    out: dict[str, Any] = {}
    for instance, value in (values or {}).items():
        host = _host_of(str(instance), [str(h) for h in (candidates or [])], dict(hostvars or {}), url_var)
        if host is not None:
            out[host] = value
    return out


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number  # NaN: no traffic


def cpu_verdict(cpu: Any, requests: Any, threshold: float = 80, runaway_factor: float = 3.0, hosts: Any = None,
                baseline_requests: Any = None, traffic_factor: float = 1.5) -> dict[str, Any]:
    """Hot instances (CPU percent of one core at or above ``threshold``) and, for each, traffic or runaway.

    A runaway spends far more CPU per request than its healthy peers (``runaway_factor`` times their median), or burns
    CPU with no requests at all. Without a healthy peer to compare with, an instance whose request rate grew by
    ``traffic_factor`` over its baseline is carrying traffic; one whose rate did not grow is a runaway.
    """
    cpu = {h: _num(v) for h, v in (cpu or {}).items()}
    requests = {h: _num(v) or 0.0 for h, v in (requests or {}).items()}
    baseline = {h: _num(v) for h, v in (baseline_requests or {}).items()}
    scope = [h for h in (hosts or cpu.keys()) if cpu.get(h) is not None]
    hot = sorted((h for h in scope if cpu[h] >= float(threshold)), key=lambda h: -cpu[h])
    peers = [h for h in cpu if cpu[h] is not None and h not in hot]
    per_request = {h: (cpu[h] / 100.0) / requests[h] for h in cpu if cpu[h] is not None and requests.get(h, 0) > 0}
    peer_cost = median([per_request[h] for h in peers if h in per_request]) if any(h in per_request for h in peers) else None
    details, runaway, traffic = [], [], []
    for host in hot:
        cost = per_request.get(host)
        grown = None
        if baseline.get(host):
            grown = requests.get(host, 0.0) / baseline[host]
        if cost is None:
            kind, why = "runaway", f"{cpu[host]:.0f} % CPU with no requests"
        elif peer_cost:
            ratio = cost / peer_cost
            kind = "runaway" if ratio >= float(runaway_factor) else "traffic"
            why = (f"{cost * 1000:.1f} ms CPU per request, {ratio:.1f}x its peers' {peer_cost * 1000:.1f} ms at "
                   f"{requests.get(host, 0):.1f} req/s")
        elif grown is not None:
            kind = "traffic" if grown >= float(traffic_factor) else "runaway"
            why = f"request rate {requests.get(host, 0):.1f} req/s, {grown:.1f}x its baseline"
        else:
            kind, why = "traffic", f"every instance is hot at {requests.get(host, 0):.1f} req/s; no peer or baseline to compare"
        (runaway if kind == "runaway" else traffic).append(host)
        details.append({"host": host, "cpu_percent": round(cpu[host], 1), "requests_per_second": round(requests.get(host, 0.0), 2),
                        "cpu_ms_per_request": None if cost is None else round(cost * 1000, 2), "kind": kind, "why": why})
    cause = ("none (no instance at or above the threshold)" if not hot else
             "a runaway process" if runaway and not traffic else
             "traffic (the load follows the requests)" if traffic and not runaway else
             "a runaway process and traffic")
    return {"hot": hot, "runaway": runaway, "traffic": traffic, "cause": cause, "details": details,
            "peer_cpu_ms_per_request": None if peer_cost is None else round(peer_cost * 1000, 2)}


def memory_verdict(available: Any, rss: Any, rss_baseline: Any, threshold: float = 10, min_growth_bytes: int = 64 * 1024 * 1024,
                   top_process: Any = None, hosts: Any = None, service_pids: Any = None) -> dict[str, Any]:
    """Hosts short of memory (available percent under ``threshold``) and, for each, whether the service leaks.

    The service leaks on a host when its resident memory grew by at least ``min_growth_bytes`` over the window
    (``rss`` now against ``rss_baseline``, its minimum) and it is the host's largest process when ``top_process``
    (host -> {pid, name, rss_bytes}) and ``service_pids`` (host -> main pid) say so. Otherwise the memory is not the
    service's leak: restarting it would not help, so a person decides (more memory, more hosts, the other process).
    """
    available = {h: _num(v) for h, v in (available or {}).items()}
    rss = {h: _num(v) for h, v in (rss or {}).items()}
    base = {h: _num(v) for h, v in (rss_baseline or {}).items()}
    tops = dict(top_process or {})
    pids = dict(service_pids or {})
    scope = [h for h in (hosts or available.keys()) if available.get(h) is not None]
    low = sorted((h for h in scope if available[h] < float(threshold)), key=lambda h: available[h])
    leaking, other, details = [], [], []
    for host in low:
        now, before = rss.get(host), base.get(host)
        growth = None if now is None or before is None else now - before
        top = tops.get(host) or {}
        top_is_service = not top or not pids.get(host) or int(top.get("pid") or 0) == int(pids.get(host) or 0)
        leak = growth is not None and growth >= int(min_growth_bytes) and top_is_service
        if leak:
            why = (f"the service grew by {growth / 1048576:.0f} MiB to {now / 1048576:.0f} MiB and holds the host's memory "
                   f"({available[host]:.1f} % available)")
        elif growth is None:
            why = "the service's memory history is missing: a leak cannot be told from load"
        elif not top_is_service:
            why = f"the largest process is {top.get('name')} (pid {top.get('pid')}), not the service"
        else:
            why = f"the service grew by only {growth / 1048576:.0f} MiB: no leak, the host needs more memory or fewer tenants"
        (leaking if leak else other).append(host)
        details.append({"host": host, "available_percent": round(available[host], 1),
                        "service_rss_bytes": None if now is None else int(now),
                        "service_growth_bytes": None if growth is None else int(growth),
                        "largest_process": top.get("name"), "kind": "leak" if leak else "not a leak", "why": why})
    cause = ("none (memory available everywhere)" if not low else
             "a memory leak in the service" if leaking and not other else
             "memory held by something other than a leaking service" if other and not leaking else
             "a memory leak in the service on some hosts, other memory pressure on others")
    return {"low": low, "leaking": leaking, "other": other, "cause": cause, "details": details}


def slow_verdict(p95: Any, threshold: float = 2.0, db_p95: Any = None, db_threshold: float = 1.0, long_running: int = 0,
                 pool_usage: Any = None, pool_threshold: float = 90, cache_hit_rate: Any = None, cache_threshold: float = 0.7,
                 cpu: Any = None, cpu_threshold: float = 80, memory_available: Any = None, memory_threshold: float = 10,
                 hosts: Any = None) -> dict[str, Any]:
    """The cause of slow responses, in the runbook's order of investigation, and the remediation it calls for.

    ``p95``, ``pool_usage``, ``cpu`` and ``memory_available`` are per inventory host. The first cause that holds wins:
    slow database queries (running statements too long, or query p95 over ``db_threshold``), the connection pool, the
    cache, CPU, memory; when none holds, latency only on some instances means those instances are degraded (restart
    them, one at a time), latency on every instance means the code path itself (a person reviews it).
    """
    p95 = {h: _num(v) for h, v in (p95 or {}).items()}
    scope = list(hosts or p95.keys())
    slow = sorted((h for h in scope if (p95.get(h) or 0) > float(threshold)), key=lambda h: -(p95.get(h) or 0))
    fast = [h for h in p95 if p95[h] is not None and p95[h] <= float(threshold)]

    def over(values: Any, limit: float, below: bool = False) -> list[str]:
        found = []
        for host, value in (values or {}).items():
            number = _num(value)
            if number is not None and host in slow and ((number < float(limit)) if below else (number > float(limit))):
                found.append(host)
        return found

    db = _num(db_p95)
    hit = _num(cache_hit_rate)
    if not slow:
        cause, remedy, targets = "none (p95 under the threshold everywhere)", "none", []
    elif int(long_running or 0) > 0 or (db is not None and db > float(db_threshold)):
        cause, remedy, targets = "slow database queries", "cancel_long_queries", []
    elif over(pool_usage, pool_threshold):
        cause, remedy, targets = "database connection pool exhausted", "pool_runbook", over(pool_usage, pool_threshold)
    elif hit is not None and hit < float(cache_threshold):
        cause, remedy, targets = "low cache hit rate", "cache_runbook", []
    elif over(cpu, cpu_threshold):
        cause, remedy, targets = "resource-bound (CPU)", "cpu_runbook", over(cpu, cpu_threshold)
    elif over(memory_available, memory_threshold, below=True):
        cause, remedy, targets = "resource-bound (memory)", "memory_runbook", over(memory_available, memory_threshold, below=True)
    elif fast:
        cause, remedy, targets = "degraded instance (slow while its dependencies and peers are fine)", "restart", slow
    else:
        cause, remedy, targets = "slow code path (every instance is slow, dependencies are fine)", "escalate", []
    return {"slow": slow, "cause": cause, "remediation": remedy, "targets": targets,
            "p95_seconds": {h: p95[h] for h in scope if p95.get(h) is not None}}


def host_values(values: Any, suffix: str = "", digits: int = 1, empty: str = "no figures", scale: float = 1.0) -> str:
    """``{host: value}`` for a sentence: ``app1 13.9 %, app2 3.9 %`` (``empty`` when there is nothing)."""
    parts = []
    for host, value in (values or {}).items():
        number = _num(value)
        parts.append(f"{host} {'n/a' if number is None else round(number * float(scale), int(digits))}{suffix}")
    return ", ".join(parts) or empty
