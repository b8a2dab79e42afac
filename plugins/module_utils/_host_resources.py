# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU, memory, processes, disks and TCP connections from /proc, with no psutil.

Two samples ``interval`` seconds apart give CPU busy percentages (host and per process)
and per-process memory growth, which is what the HighCPUUsage / LowMemory / SlowResponseTime
runbooks ask for ("check process list", "review memory usage by process", "check for memory
leaks").  Everything is read-only and works the same inside a systemd-nspawn container.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import time
from typing import Any, Callable

MAX_INTERVAL = 300
MiB = 1024 * 1024
# The percent rule only counts for growth of at least this much: a 200 KiB process doubling is no leak.
LEAK_PERCENT_FLOOR_BYTES = MiB

TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
    "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
    "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

# Flags whose *next* argument is a secret: --password x, --token x, -H "Authorization: ..." is handled below.
_SECRET_NAME = r"[\w.-]*(?:passw(?:or)?d|passwd|pwd|secret|token|api[_-]?key|apikey|credential|private[_-]?key|auth)[\w.-]*"
_SECRET_FLAG = re.compile(rf"^--?{_SECRET_NAME}$", re.IGNORECASE)
_SECRET_ASSIGNMENT = re.compile(rf"^(-{{0,2}}{_SECRET_NAME}[=:])(\S+)$", re.IGNORECASE)
_SECRET_INLINE = re.compile(rf"((?:^|[\s,;&?]){_SECRET_NAME}\s*[=:]\s*)([^\s,;&]+)", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)(@)", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"^((?:proxy-)?authorization\s*:\s*)(.+)$", re.IGNORECASE)
_BEARER = re.compile(r"(\bbearer\s+)(\S+)", re.IGNORECASE)
REDACTED = "********"


def redact_argv(argv: list[str]) -> list[str]:
    """Hide secret values in a command line: ``--password x``, ``password=x``, ``user:pass@`` in URLs, auth headers."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if _SECRET_FLAG.match(arg):
            out.append(arg)
            hide_next = True
            continue
        header = _AUTH_HEADER.match(arg)
        if header:
            out.append(header.group(1) + REDACTED)
            continue
        assignment = _SECRET_ASSIGNMENT.match(arg)
        if assignment:
            out.append(assignment.group(1) + REDACTED)
            continue
        text = _URL_CREDENTIALS.sub(rf"\g<1>{REDACTED}\g<3>", arg)
        text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
        # e.g. sh -c "PGPASSWORD=x psql ..." arrives as one argument
        text = _SECRET_INLINE.sub(rf"\g<1>{REDACTED}", text)
        out.append(text)
    return out


def format_cmdline(raw: bytes, length: int) -> str:
    """/proc/<pid>/cmdline (NUL separated) → redacted, space-joined, truncated text."""
    argv = [part.decode("utf-8", errors="replace") for part in raw.rstrip(b"\0").split(b"\0") if part]
    text = " ".join(redact_argv(argv))
    return text if len(text) <= length else text[:max(length - 1, 0)] + "…"


def parse_proc_stat(text: str) -> dict[str, dict[str, int]]:
    """/proc/stat → {"cpu": {user, nice, ...}, "cpu0": {...}}; missing trailing fields count as 0."""
    cpus: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *values = line.split()
        numbers = [int(value) for value in values[:len(CPU_FIELDS)]]
        numbers += [0] * (len(CPU_FIELDS) - len(numbers))
        cpus[name] = dict(zip(CPU_FIELDS, numbers))
    return cpus


def cpu_percentages(before: dict[str, int], after: dict[str, int]) -> dict[str, float | None]:
    """Busy, user, system, iowait and steal percent between two samples of one /proc/stat cpu line.

    guest time is already inside user, so it is not added again; iowait counts as idle for "busy".
    """
    delta = {field: max(after[field] - before[field], 0) for field in CPU_FIELDS}
    total = sum(delta.values())
    if total <= 0:
        return {"busy": None, "user": None, "system": None, "iowait": None, "steal": None}

    def pct(value: int) -> float:
        return round(100.0 * value / total, 1)

    return {
        "busy": pct(total - delta["idle"] - delta["iowait"]),
        "user": pct(delta["user"] + delta["nice"]),
        "system": pct(delta["system"] + delta["irq"] + delta["softirq"]),
        "iowait": pct(delta["iowait"]),
        "steal": pct(delta["steal"]),
    }


def parse_pid_stat(text: str) -> dict[str, Any]:
    """/proc/<pid>/stat → the fields we use.  The command name may hold spaces and parentheses."""
    open_paren, close_paren = text.index("("), text.rindex(")")
    pid = int(text[:open_paren])
    name = text[open_paren + 1:close_paren]
    fields = text[close_paren + 2:].split()
    # fields[0] is field 3 (state) of proc(5)
    return {
        "pid": pid,
        "name": name,
        "state": fields[0],
        "ppid": int(fields[1]),
        "cpu_ticks": int(fields[11]) + int(fields[12]),  # utime + stime
        "threads": int(fields[17]),
        "start_ticks": int(fields[19]),
        "rss_pages": int(fields[21]),
    }


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo → {field: bytes} (kB values converted; HugePages counts stay counts)."""
    info: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        value = int(parts[0])
        info[key.strip()] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    return info


def decode_address(hex_address: str) -> tuple[str, int]:
    """``0100007F:1F90`` → ("127.0.0.1", 8080); IPv6 too (32 hex digits, 4 little-endian words)."""
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    # the kernel prints each 32-bit word in host (little-endian) order
    packed = b"".join(raw[index:index + 4][::-1] for index in range(0, len(raw), 4))
    address = ipaddress.ip_address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address), int(port_hex, 16)


def parse_net_tcp(text: str) -> list[dict[str, Any]]:
    """/proc/net/tcp or tcp6 → [{local, local_port, remote, remote_port, state, inode}]."""
    sockets = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        local, local_port = decode_address(parts[1])
        remote, remote_port = decode_address(parts[2])
        sockets.append({
            "local": local, "local_port": local_port, "remote": remote, "remote_port": remote_port,
            "state": TCP_STATES.get(parts[3].upper(), parts[3]), "inode": int(parts[9]),
        })
    return sockets


def summarise_ports(sockets: list[dict[str, Any]], ports: list[int], top: int) -> list[dict[str, Any]]:
    """Per port: listening, inbound connections (local side is the port) by state and by remote
    address, and outbound ones (this host is the client of that port, e.g. the app to PostgreSQL)."""
    summary = []
    for port in ports:
        listening = any(s["local_port"] == port and s["state"] == "LISTEN" for s in sockets)
        inbound = [s for s in sockets if s["local_port"] == port and s["state"] != "LISTEN"]
        outbound = [s for s in sockets if s["remote_port"] == port and s["state"] != "LISTEN"]
        remotes: dict[str, int] = {}
        for sock in inbound:
            if sock["state"] == "ESTABLISHED":
                remotes[sock["remote"]] = remotes.get(sock["remote"], 0) + 1
        summary.append({
            "port": port,
            "listening": listening,
            "inbound": {
                "total": len(inbound),
                "established": sum(1 for s in inbound if s["state"] == "ESTABLISHED"),
                "states": _count(s["state"] for s in inbound),
                "top_remote": [{"address": address, "count": count}
                               for address, count in sorted(remotes.items(), key=lambda item: (-item[1], item[0]))[:top]],
            },
            "outbound": {
                "total": len(outbound),
                "established": sum(1 for s in outbound if s["state"] == "ESTABLISHED"),
                "states": _count(s["state"] for s in outbound),
            },
        })
    return summary


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def disk_usage(path: str, statvfs: Callable[[str], Any] = os.statvfs) -> dict[str, Any]:
    """Like df: percent used is used / (used + available to unprivileged users)."""
    try:
        stat = statvfs(path)
    except OSError as exc:
        return {"path": path, "error": exc.strerror or str(exc)}
    total = stat.f_blocks * stat.f_frsize
    free = stat.f_bfree * stat.f_frsize
    available = stat.f_bavail * stat.f_frsize
    used = total - free
    inodes_used = stat.f_files - stat.f_ffree
    return {
        "path": path,
        "total_bytes": total,
        "used_bytes": used,
        "available_bytes": available,
        "used_percent": round(100.0 * used / (used + available), 1) if used + available else None,
        "inodes_total": stat.f_files,
        "inodes_used_percent": round(100.0 * inodes_used / stat.f_files, 1) if stat.f_files else None,
    }


class ProcReader:
    """Reads the files under one /proc (a fake tree in unit tests)."""

    def __init__(self, root: str = "/proc"):
        self.root = root

    def read(self, *parts: str) -> str:
        with open(os.path.join(self.root, *parts), encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def read_bytes(self, *parts: str) -> bytes:
        with open(os.path.join(self.root, *parts), "rb") as handle:
            return handle.read()

    def pids(self) -> list[int]:
        return [int(name) for name in os.listdir(self.root) if name.isdigit()]

    def processes(self) -> dict[int, dict[str, Any]]:
        """One snapshot of every process still there when read (processes come and go: skip them)."""
        snapshot = {}
        for pid in self.pids():
            try:
                snapshot[pid] = parse_pid_stat(self.read(str(pid), "stat"))
            except (OSError, ValueError, IndexError):
                continue
        return snapshot

    def fd_count(self, pid: int) -> int | None:
        try:
            return len(os.listdir(os.path.join(self.root, str(pid), "fd")))
        except OSError:
            return None

    def user(self, pid: int) -> str | None:
        try:
            for line in self.read(str(pid), "status").splitlines():
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
                    try:
                        return pwd.getpwuid(uid).pw_name
                    except KeyError:
                        return str(uid)
        except OSError:
            return None
        return None

    def cmdline(self, pid: int, length: int) -> str:
        try:
            raw = self.read_bytes(str(pid), "cmdline")
        except OSError:
            return ""
        return format_cmdline(raw, length)


def _validate(params: dict[str, Any]) -> None:
    if not 0 < params["interval"] <= MAX_INTERVAL:
        raise ValueError(f"interval: must be more than 0 and at most {MAX_INTERVAL} seconds, got {params['interval']}")
    if not 1 <= params["top"] <= 1000:
        raise ValueError(f"top: must be between 1 and 1000, got {params['top']}")
    for path in params["paths"]:
        if not os.path.isabs(path):
            raise ValueError(f"paths: {path!r} is not an absolute path")
    for port in params["ports"]:
        if not 0 < port < 65536:
            raise ValueError(f"ports: {port} is not a TCP port (1-65535)")
    if params["leak_growth_bytes"] <= 0:
        raise ValueError(f"leak_growth_bytes: must be greater than 0, got {params['leak_growth_bytes']}")
    if params["leak_growth_percent"] <= 0:
        raise ValueError(f"leak_growth_percent: must be greater than 0, got {params['leak_growth_percent']}")
    if params["cmdline_length"] < 10:
        raise ValueError(f"cmdline_length: must be at least 10, got {params['cmdline_length']}")


DEFAULTS: dict[str, Any] = {
    "interval": 2.0, "top": 10, "per_core": False, "paths": ["/"], "ports": [], "leak_growth_bytes": 8 * MiB,
    "leak_growth_percent": 20.0, "cmdline_length": 200, "thresholds": {},
}


def collect(options: dict[str, Any] | None = None, proc_root: str = "/proc", sleep: Callable[[float], None] = time.sleep,
            statvfs: Callable[[str], Any] = os.statvfs) -> dict[str, Any]:
    """Sample twice and return cpu, load, memory, processes, leak suspects, disks and connections."""
    params = dict(DEFAULTS)
    params.update({key: value for key, value in (options or {}).items() if value is not None})
    _validate(params)
    proc = ProcReader(proc_root)
    page_size = os.sysconf("SC_PAGE_SIZE")
    clock_ticks = os.sysconf("SC_CLK_TCK")

    stat_before = parse_proc_stat(proc.read("stat"))
    procs_before = proc.processes()
    started = time.monotonic()
    sleep(params["interval"])
    stat_after = parse_proc_stat(proc.read("stat"))
    procs_after = proc.processes()
    elapsed = max(time.monotonic() - started, 1e-6)

    cores = sum(1 for name in stat_after if name != "cpu") or (os.cpu_count() or 1)
    cpu = cpu_percentages(stat_before["cpu"], stat_after["cpu"])
    cpu["cores"] = cores
    if params["per_core"]:
        cpu["per_core"] = {name: cpu_percentages(stat_before[name], stat_after[name])["busy"]
                           for name in stat_after if name != "cpu" and name in stat_before}

    load_fields = proc.read("loadavg").split()
    loads = [float(value) for value in load_fields[:3]]
    load = {"1m": loads[0], "5m": loads[1], "15m": loads[2], "per_core_1m": round(loads[0] / cores, 2),
            "per_core_5m": round(loads[1] / cores, 2), "per_core_15m": round(loads[2] / cores, 2)}
    if len(load_fields) > 3 and "/" in load_fields[3]:
        running, total = load_fields[3].split("/")
        load.update(running_tasks=int(running), total_tasks=int(total))

    meminfo = parse_meminfo(proc.read("meminfo"))
    total_mem = meminfo.get("MemTotal", 0)
    available = meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    swap_total, swap_free = meminfo.get("SwapTotal", 0), meminfo.get("SwapFree", 0)
    memory = {
        "total_bytes": total_mem,
        "available_bytes": available,
        "available_percent": round(100.0 * available / total_mem, 1) if total_mem else None,
        "used_percent": round(100.0 * (total_mem - available) / total_mem, 1) if total_mem else None,
        "cached_bytes": meminfo.get("Cached", 0) + meminfo.get("Buffers", 0),
        "swap_total_bytes": swap_total,
        "swap_used_bytes": swap_total - swap_free,
        "swap_used_percent": round(100.0 * (swap_total - swap_free) / swap_total, 1) if swap_total else None,
    }

    rows = []
    for pid, after in procs_after.items():
        before = procs_before.get(pid)
        if before is not None and before["start_ticks"] != after["start_ticks"]:
            before = None  # the pid was reused by a new process
        rss = after["rss_pages"] * page_size
        if before is None:
            # started during the interval: all its CPU time fell inside it
            cpu_ticks = after["cpu_ticks"]
            growth = None
        else:
            cpu_ticks = after["cpu_ticks"] - before["cpu_ticks"]
            growth = rss - before["rss_pages"] * page_size
        before_rss = before["rss_pages"] * page_size if before else None
        rows.append({
            "pid": pid, "ppid": after["ppid"], "name": after["name"], "state": after["state"],
            "threads": after["threads"],
            "cpu_percent": round(100.0 * cpu_ticks / clock_ticks / elapsed, 1),
            "rss_bytes": rss,
            "rss_growth_bytes": growth,
            "rss_growth_percent": round(100.0 * growth / before_rss, 1) if growth is not None and before_rss else None,
            "new": before is None,
        })

    def enrich(row: dict[str, Any]) -> dict[str, Any]:
        row = dict(row)
        row["user"] = proc.user(row["pid"])
        row["fds"] = proc.fd_count(row["pid"])
        row["cmdline"] = proc.cmdline(row["pid"], params["cmdline_length"]) or f"[{row['name']}]"
        return row

    top = params["top"]
    by_cpu = [enrich(row) for row in sorted(rows, key=lambda r: (-r["cpu_percent"], -r["rss_bytes"]))[:top]]
    by_rss = [enrich(row) for row in sorted(rows, key=lambda r: -r["rss_bytes"])[:top]]

    suspects = []
    for row in rows:
        growth = row["rss_growth_bytes"]
        if growth is None or growth <= 0:
            continue
        by_bytes = growth >= params["leak_growth_bytes"]
        by_percent = (row["rss_growth_percent"] or 0) >= params["leak_growth_percent"] and growth >= LEAK_PERCENT_FLOOR_BYTES
        if by_bytes or by_percent:
            entry = enrich(row)
            entry["growth_bytes_per_second"] = round(growth / elapsed)
            suspects.append(entry)
    suspects.sort(key=lambda r: -r["rss_growth_bytes"])

    result: dict[str, Any] = {
        "interval_seconds": round(elapsed, 3),
        "cpu": cpu,
        "load": load,
        "memory": memory,
        "processes": {"total": len(rows), "running": sum(1 for r in rows if r["state"] == "R"),
                      "zombie": sum(1 for r in rows if r["state"] == "Z")},
        "top_cpu": by_cpu,
        "top_memory": by_rss,
        "leak_suspects": suspects[:top],
        "disks": [disk_usage(path, statvfs) for path in params["paths"]],
    }
    try:
        allocated, _unused, maximum = (int(value) for value in proc.read("sys", "fs", "file-nr").split())
        result["file_descriptors"] = {"allocated": allocated, "max": maximum}
    except (OSError, ValueError):
        result["file_descriptors"] = None
    if params["ports"]:
        sockets = []
        for name in ("tcp", "tcp6"):
            try:
                sockets += parse_net_tcp(proc.read("net", name))
            except OSError:
                continue  # no IPv6 in this namespace
        result["connections"] = summarise_ports(sockets, params["ports"], top)
    result["findings"] = findings(result, params["thresholds"] or {})
    return result


def findings(result: dict[str, Any], thresholds: dict[str, Any]) -> list[str]:
    """Sentences for the incident report against the runbook's alert thresholds."""
    out = []
    cpu_limit = thresholds.get("cpu_busy_percent", 80)
    memory_floor = thresholds.get("memory_available_percent", 10)
    disk_limit = thresholds.get("disk_used_percent", 90)
    busy = result["cpu"]["busy"]
    if busy is not None and busy >= cpu_limit:
        leader = result["top_cpu"][0] if result["top_cpu"] else None
        who = f"; top process {leader['name']} (pid {leader['pid']}) at {leader['cpu_percent']}%" if leader else ""
        out.append(f"CPU {busy}% busy over the interval (threshold {cpu_limit}%){who}")
    if result["load"]["per_core_5m"] > 1:
        out.append(f"5 minute load {result['load']['5m']} is above the {result['cpu']['cores']} cores")
    available = result["memory"]["available_percent"]
    if available is not None and available < memory_floor:
        out.append(f"only {available}% of memory available (threshold {memory_floor}%)")
    if result["cpu"]["iowait"] and result["cpu"]["iowait"] >= 20:
        out.append(f"{result['cpu']['iowait']}% of CPU time waiting for I/O")
    if result["cpu"]["steal"] and result["cpu"]["steal"] >= 10:
        out.append(f"{result['cpu']['steal']}% of CPU time stolen by the hypervisor")
    for suspect in result["leak_suspects"]:
        out.append(f"{suspect['name']} (pid {suspect['pid']}) grew {suspect['rss_growth_bytes'] // 1024} KiB "
                   f"in {result['interval_seconds']}s: possible memory leak")
    for disk in result["disks"]:
        if disk.get("used_percent") is not None and disk["used_percent"] >= disk_limit:
            out.append(f"{disk['path']} is {disk['used_percent']}% full")
    return out
