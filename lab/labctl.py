"""lab: start, inspect and break the local lab fleet (systemd hosts on loopback).

    lab up | down | status [--json] | ssh HOST [COMMAND...]
    lab fault list | fault error_burst on [--rate R] [--kind K] [--endpoints ...] [--hosts app1,app2] | fault error_burst off
    lab deploy VERSION [--defect KIND] [--hosts ...] | lab rollback [--to VERSION] [--hosts ...]
    lab alerts [--json]

The fleet (lab/fleet.py) is systemd-nspawn hosts from lab/hosts.py, each with
systemd as PID 1 and sshd on its own loopback port; the services are systemd
units in them. The traffic generator is the one process on the machine: it is
started in its own session and stopped by its recorded process group, never by
name. Standard library only. State lives in $LAB_STATE_DIR (default <repo>/.lab).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

LAB_DIR = Path(__file__).resolve().parent
REPO = LAB_DIR.parent
sys.path.insert(0, str(LAB_DIR))
import fleet  # noqa: E402  (lab/fleet.py)
import hosts  # noqa: E402  (lab/hosts.py)
from scheduler.errors import DEFAULT_ENDPOINTS, KINDS  # noqa: E402  (stdlib-only module shared with the app)

STATE_FILE = "lab.json"
MARKER = ".lab-state"  # only a directory holding this marker is ever wiped by `up`
READY_TIMEOUT = 45.0
STOP_TIMEOUT = 10.0
HOST_NAMES = fleet.APP_HOSTS  # the hosts faults, deploy and rollback act on
SEED_RELEASES = (("v1.4.0", 3), ("v1.4.1", 2))  # version, deployed this many days ago; the last is current
TRAFFIC_RATE = 15.0


class LabError(Exception):
    """A failure the user can act on; printed without a traceback."""


# --------------------------------------------------------------------------- paths and settings


@dataclass(frozen=True)
class Layout:
    root: Path
    port_offset: int = 0

    @classmethod
    def from_env(cls) -> Layout:
        root = Path(os.environ.get("LAB_STATE_DIR") or REPO / ".lab").resolve()
        raw = os.environ.get("LAB_PORT_OFFSET", "0")
        try:
            offset = int(raw)
        except ValueError:
            raise LabError(f"LAB_PORT_OFFSET must be an integer, not {raw!r}") from None
        if not 0 <= offset <= 1000:
            raise LabError(f"LAB_PORT_OFFSET must be between 0 and 1000, not {offset}")
        return cls(root, offset)

    @property
    def ports(self) -> fleet.Ports:
        return fleet.Ports(self.port_offset)

    def fleet(self, secrets: dict | None = None) -> fleet.Fleet:
        return fleet.Fleet(self.root, self.ports, os.environ.get("LAB_LOG_FORMAT", "json"), secrets or {})

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    def releases_dir(self, host: str) -> Path:
        """The host's /srv/residency-scheduler/releases, seen from the machine (a read-write bind)."""
        return self.host_dir(host) / "srv" / "releases"

    def fault_file(self, host: str) -> Path:
        return self.host_dir(host) / "srv" / "faults.json"

    @property
    def prometheus_address(self) -> str:
        return self.ports.prometheus

    def app_addresses(self) -> dict[str, str]:
        return self.ports.app_addresses()


def venv_python() -> Path:
    python = Path(os.environ.get("LAB_PYTHON") or REPO / ".venv" / "bin" / "python")
    if not os.access(python, os.X_OK):
        raise LabError(f"no Python at {python}: create the venv (python3 -m venv .venv && .venv/bin/pip install -r requirements/dev.txt) or set LAB_PYTHON")
    return python


# --------------------------------------------------------------------------- HTTP helpers (loopback only)


# never through a proxy from the environment: lab addresses are 127.0.0.1
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(url: str, timeout: float = 2.0, method: str = "GET"):
    request = urllib.request.Request(url, method=method)
    with _OPENER.open(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def try_json(url: str, timeout: float = 2.0):
    try:
        return http_json(url, timeout)
    except (OSError, ValueError):
        return None


def port_in_use(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError:
            return True
    return False


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after it
    return raw[raw.rindex(")") + 2:].split()


def process_start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat else None  # field 22: start time in clock ticks since boot


def is_running(pid: int, start_time: str | None) -> bool:
    """The recorded process is still there: same pid, same start time, not a zombie."""
    stat = _proc_stat(pid)
    return bool(stat) and stat[0] != "Z" and (start_time is None or stat[19] == start_time)


@dataclass
class Running:
    """A started process as recorded in lab.json."""

    name: str
    kind: str
    pid: int
    start_time: str | None
    address: str
    log: str
    argv: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return is_running(self.pid, self.start_time)


def start_process(name: str, kind: str, argv: list[str], env: dict[str, str], log: Path, address: str) -> tuple[Running, subprocess.Popen]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # own session = own process group: stopped as a group, immune to the caller's Ctrl-C
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                env={**os.environ, **env}, cwd=str(LAB_DIR), start_new_session=True)
    return Running(name, kind, proc.pid, process_start_time(proc.pid), address, str(log), argv), proc


def stop_process(running: Running, timeout: float = STOP_TIMEOUT) -> str:
    """SIGTERM the recorded process group, SIGKILL it after ``timeout``; says what happened."""
    if not running.alive():
        return "not running"
    try:
        os.killpg(running.pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running.alive():
            return "stopped"
        time.sleep(0.05)
    try:
        os.killpg(running.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 5
    while running.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "killed" if not running.alive() else "still running"


# --------------------------------------------------------------------------- state file


def load_state(layout: Layout) -> dict | None:
    try:
        return json.loads((layout.root / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise LabError(f"{layout.root / STATE_FILE} is not valid JSON ({exc}); stop leftover processes by hand") from None


def save_state(layout: Layout, state: dict) -> None:
    write_json_atomic(layout.root / STATE_FILE, state)


def recorded(state: dict | None) -> list[Running]:
    return [Running(**item) for item in (state or {}).get("services", [])]


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- releases


VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def write_release(releases_dir: Path, version: str, deployed_at: datetime, defect: dict | None = None) -> Path:
    release_dir = releases_dir / version
    release_dir.mkdir(parents=True)
    manifest = {"version": version, "deployed_at": deployed_at.isoformat(timespec="seconds"),
                "commit": hashlib.sha1(f"{version}-{deployed_at.isoformat()}".encode()).hexdigest()}  # nosec: an id, not security
    if defect:
        manifest["defect"] = defect
    write_json_atomic(release_dir / "release.json", manifest)
    return release_dir


def switch_current(releases_dir: Path, version: str) -> None:
    """Point ``current`` at ``version`` atomically: a new symlink renamed over the old one."""
    tmp = releases_dir / ".current.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(version, tmp)
    os.replace(tmp, releases_dir / "current")


def current_version(releases_dir: Path) -> str | None:
    try:
        return os.readlink(releases_dir / "current")
    except OSError:
        return None


def list_releases(releases_dir: Path) -> list[dict]:
    """Releases on a host, oldest deployment first."""
    releases = []
    for manifest in releases_dir.glob("*/release.json"):
        if manifest.parent.is_symlink():
            continue  # current
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        releases.append({**data, "version": manifest.parent.name})
    return sorted(releases, key=lambda r: (r.get("deployed_at") or "", r["version"]))


# --------------------------------------------------------------------------- the fleet


def _prepare_app_state(layout: Layout, host: str) -> None:
    """Seed releases and an empty fault switch in the host's /srv/residency-scheduler (a bind)."""
    releases_dir = layout.releases_dir(host)
    releases_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc).astimezone()
    for version, days_ago in SEED_RELEASES:
        write_release(releases_dir, version, now - timedelta(days=days_ago))
    switch_current(releases_dir, SEED_RELEASES[-1][0])
    write_json_atomic(layout.fault_file(host), {})


def _busy_ports(layout: Layout) -> list[str]:
    return [f"{what} (127.0.0.1:{port})" for what, port in layout.ports.all_listening() if port_in_use(f"127.0.0.1:{port}")]


def _host_alive(name: str) -> bool:
    try:
        return hosts.status(name).state in ("running", "booting")
    except hosts.HostError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with _OPENER.open(urllib.request.Request(url), timeout=2) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError):
        return False


def _prometheus_targets(layout: Layout) -> dict[str, str] | None:
    targets = try_json(f"http://{layout.prometheus_address}/api/v1/targets?state=active")
    if not targets:
        return None
    return {f"{t['labels'].get('job')}/{t['labels'].get('host')}": t.get("health") for t in targets["data"]["activeTargets"]}


def _readiness_problems(layout: Layout) -> list[str]:
    """What is not ready yet (empty when the whole fleet is)."""
    ports = layout.ports
    problems = []
    for host, address in ports.app_addresses().items():
        health = try_json(f"http://{address}/health")
        if not health or health.get("status") != "healthy":
            problems.append(f"{host}: residency-scheduler-backend http://{address}/health is "
                            f"{(health or {}).get('status', 'not answering')} ({(health or {}).get('database', '')})")
    for kind, path in (("ml_api", "/health"), ("ml_worker", "/health")):
        if not _http_ok(f"http://{ports.address('ml1', kind)}{path}"):
            problems.append(f"ml1: {kind} http://{ports.address('ml1', kind)}{path} not healthy")
    for kind, path in (("alertmanager", "/-/ready"), ("webhook", "/health")):
        if not _http_ok(f"http://{ports.address('mon1', kind)}{path}"):
            problems.append(f"mon1: {kind} http://{ports.address('mon1', kind)}{path} not ready")
    try:
        with socket.create_connection(("127.0.0.1", ports.redis), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            pong = sock.recv(16)
    except OSError as exc:
        pong = str(exc).encode()
    if not pong.startswith(b"+PONG"):
        problems.append(f"cache1: redis-server 127.0.0.1:{ports.redis} does not answer PING ({pong.decode(errors='replace').strip()})")
    targets = _prometheus_targets(layout)
    if targets is None:
        problems.append(f"mon1: Prometheus API at http://{layout.prometheus_address} did not answer")
    else:
        expected = {f"{job['job_name']}/{cfg['labels']['host']}" for job in layout.fleet().prometheus_config()["scrape_configs"]
                    for cfg in job["static_configs"]}
        down = sorted(f"{t} ({targets.get(t, 'missing')})" for t in expected if targets.get(t) != "up")
        if down:
            problems.append(f"mon1: Prometheus targets not up yet: {', '.join(down)}")
    return problems


def _unit_states(name: str, units: list[str]) -> dict[str, str]:
    """``systemctl is-active`` of ``units`` in host ``name`` over SSH (one connection)."""
    if not units:
        return {}
    try:
        result = hosts.run(name, ["systemctl", "is-active", *units], check=False, timeout=15)
    except (hosts.HostError, subprocess.TimeoutExpired) as exc:
        return {unit: f"unreachable ({exc})" for unit in units}
    states = result.stdout.split()
    if len(states) != len(units):
        return {unit: f"unreachable ({result.stderr.strip() or 'no answer'})" for unit in units}
    return dict(zip(units, states))


def _failed_units() -> str:
    """Failed units of every host, with their last journal lines (for an error message)."""
    out = []
    for spec in fleet.FLEET:
        result = hosts.run(spec.name, "for u in $(systemctl list-units --failed --plain --no-legend | cut -d' ' -f1); do "
                           "echo \"== $u\"; journalctl -u \"$u\" -n 6 --no-pager -o cat; done", check=False, timeout=20)
        if result.stdout.strip():
            out.append(f"{spec.name}:\n" + "\n".join("    " + line for line in result.stdout.strip().splitlines()))
    return ("\nfailed units:\n  " + "\n  ".join(out)) if out else ""


def _print_up_summary(layout: Layout, infos: list, traffic: Running, timings: dict[str, float]) -> None:
    ports = layout.ports
    rows = []
    by_name = {info.name: info for info in infos}
    for spec in fleet.FLEET:
        info = by_name[spec.name]
        services = ", ".join(f"{s.unit.removesuffix('.service')}" + (f" (127.0.0.1:{s.port + layout.port_offset})" if s.port else "")
                             for s in spec.services)
        rows.append([spec.name, ",".join(spec.groups), f"127.0.0.1:{ports.ssh(spec.name)}", str(info.nspawn_pid), services])
    rows.append(["traffic", "-", "-", str(traffic.pid), f"lab/traffic.py (~{TRAFFIC_RATE:g} req/s over the apps; on this machine)"])
    _print_table(rows, ["HOST", "GROUPS", "SSH", "PID", "SERVICES (systemd units)"])
    breakdown = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in timings.items() if step != "total")
    print(f"lab up in {timings['total']:.1f}s ({breakdown}); state in {layout.root}")
    print(f"ssh: ssh -F {layout.root / 'ssh' / 'config'} app1 | lab/lab ssh app1; Prometheus http://{layout.prometheus_address}, "
          f"Alertmanager http://{ports.alertmanager}; inventory: inventories/lab")


def cmd_up(layout: Layout, _args) -> int:
    began = time.monotonic()
    timings: dict[str, float] = {}

    def lap(step: str, since: float) -> float:
        now = time.monotonic()
        timings[step] = now - since
        return now

    state = load_state(layout)
    if state:
        alive = [name for name in state.get("hosts", []) if _host_alive(name)]
        if alive:
            dead = [name for name in state.get("hosts", []) if name not in alive]
            traffic = recorded(state)
            if dead or not all(r.alive() for r in traffic):
                missing = dead + [r.name for r in traffic if not r.alive()]
                raise LabError(f"lab in {layout.root} is partly up ({', '.join(missing)} not running): run `lab down` then `lab up`")
            print(f"lab already up in {layout.root} ({', '.join(alive)}); see `lab status`")
            return 0
    busy = _busy_ports(layout)
    if busy:
        raise LabError(f"address already in use for {', '.join(busy)}: another lab or service is running (set LAB_PORT_OFFSET to move the lab)")
    if (layout.root / "hosts").is_dir():
        hosts.stop_all()  # a crashed earlier lab: unmount and clean its cgroups before the wipe
    _reset_state_dir(layout.root)
    _raise_inotify_limit()
    step = time.monotonic()
    if not hosts.base_image().tarball.exists():
        print("building the hosts' base rootfs once (about 90 s; cached in "
              f"{hosts.cache_dir()}; `make lab-base` does it ahead)", flush=True)
    image = hosts.build_base()
    step = lap("base", step)
    the_fleet = layout.fleet(fleet.load_secrets(layout.root))
    for host in fleet.APP_HOSTS:
        _prepare_app_state(layout, host)
    the_fleet.prepare_disks(image.lower)
    build = the_fleet.build_heart_disease()
    state = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "state_dir": str(layout.root),
             "port_offset": layout.port_offset, "hosts": [spec.name for spec in fleet.FLEET], "services": []}
    save_state(layout, state)  # recorded before booting, so `lab down` can stop a half-started lab
    step = lap("prepare", step)
    try:
        infos = hosts.boot_many(the_fleet.boot_specs())
        state["host_pids"] = {info.name: [info.supervisor_pid, info.nspawn_pid] for info in infos}
        save_state(layout, state)
        step = lap("boot", step)
        seeded = the_fleet.provision_database()
        step = lap("database", step)
        the_fleet.start_heart_disease(build)
        step = lap("ml", step)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            problems = _readiness_problems(layout)
            if not problems:
                break
            if time.monotonic() > deadline:
                raise LabError(f"lab did not come up within {READY_TIMEOUT:.0f}s:\n  " + "\n  ".join(problems) + _failed_units())
            time.sleep(0.3)
        step = lap("ready", step)
        traffic, _proc = start_process(
            "traffic", "traffic", [str(venv_python()), str(LAB_DIR / "traffic.py"), "--rate", str(TRAFFIC_RATE),
                                   "--targets", ",".join(f"http://{a}" for a in layout.app_addresses().values())],
            {}, layout.root / "traffic" / "traffic.out", "")
        state["services"].append(asdict(traffic))
        state["database"] = {k: seeded[k] for k in ("start", "days", "residents", "faculty", "assignments") if k in seeded}
        save_state(layout, state)
    except BaseException:
        if build.poll() is None:
            build.kill()
        build.wait()
        for running in recorded(state):
            stop_process(running)
        stopped = hosts.stop_all()
        print(f"stopped hosts: {', '.join(stopped)}", file=sys.stderr)
        (layout.root / STATE_FILE).unlink(missing_ok=True)
        raise
    timings["total"] = time.monotonic() - began
    state["up_seconds"] = {k: round(v, 2) for k, v in timings.items()}
    save_state(layout, state)
    _print_up_summary(layout, infos, traffic, timings)
    return 0


INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_PER_HOST = 8  # systemd, journald, logind, dbus, … in each host


def _raise_inotify_limit() -> None:
    """Each host takes ~7 inotify instances; at Debian's default of 128, a third lab (the tests', molecule's)
    would stop booting with "Too many open files". Raise the machine's limit when this fleet would cross it."""
    try:
        limit = int(INOTIFY_LIMIT.read_text(encoding="ascii"))
        running = sum(1 for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
                      if line.split()[1].startswith(str(hosts.MOUNT_ROOT) + "/"))
    except (OSError, ValueError, IndexError):
        return
    needed = (running + len(fleet.FLEET)) * INOTIFY_PER_HOST
    if needed > limit:
        try:
            INOTIFY_LIMIT.write_text("1024\n", encoding="ascii")
            print(f"raised fs.inotify.max_user_instances from {limit} to 1024 ({running} lab hosts already running)", flush=True)
        except OSError as exc:
            print(f"warning: {running + len(fleet.FLEET)} lab hosts may exceed fs.inotify.max_user_instances={limit} "
                  f"and fail to boot ({exc}); sysctl -w fs.inotify.max_user_instances=1024", file=sys.stderr)


def _leftover_mounts() -> list[str]:
    root = str(hosts.MOUNT_ROOT / hosts.lab_id()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(root)]


def cmd_down(layout: Layout, _args) -> int:
    began = time.monotonic()
    state = load_state(layout)
    traffic = recorded(state)
    known = hosts.list_hosts() if (layout.root / "hosts").is_dir() else []
    running_hosts = [h.name for h in known if h.state in ("running", "booting")]
    if not running_hosts and not any(r.alive() for r in traffic) and not _leftover_mounts():
        (layout.root / STATE_FILE).unlink(missing_ok=True)
        print(f"lab is not running ({layout.root})")
        return 0
    failed = []
    for running in traffic:
        outcome = stop_process(running)
        print(f"{running.name:<10} pid {running.pid:<8} {outcome}")
        if outcome == "still running":
            failed.append(running.name)
    stopped = hosts.stop_all() if (layout.root / "hosts").is_dir() else {}
    for name, seconds in stopped.items():
        print(f"{name:<10} {'stopped' if name in running_hosts else 'cleaned up':<14} {seconds:.1f}s")
    failed += [name for name in stopped if _host_alive(name)]
    mounts = _leftover_mounts()
    if failed or mounts:
        raise LabError(f"could not stop {', '.join(failed + mounts)}")
    (layout.root / STATE_FILE).unlink(missing_ok=True)
    print(f"lab down in {time.monotonic() - began:.1f}s")
    return 0


def _host_status(layout: Layout, spec: fleet.HostSpec) -> tuple[dict, list[dict]]:
    """One host's state and its services' (units over SSH, HTTP health from the machine)."""
    try:
        info = hosts.status(spec.name)
    except hosts.HostError:
        info = None
    up = bool(info and info.state == "running")
    host = {"name": spec.name, "groups": list(spec.groups), "ssh": f"127.0.0.1:{layout.ports.ssh(spec.name)}",
            "state": info.state if info else "missing", "pid": info.nspawn_pid if info else None}
    units = _unit_states(spec.name, [s.unit for s in spec.services]) if up else {}
    if up:
        system = hosts.run(spec.name, "systemctl is-system-running", check=False, timeout=15).stdout.strip()
        host["system_state"] = system
    host["healthy"] = up and host.get("system_state") in ("running", "degraded") and all(v == "active" for v in units.values())
    services = []
    for service in spec.services:
        address = f"127.0.0.1:{service.port + layout.port_offset}" if service.port else ""
        item = {"name": f"{spec.name}/{service.unit.removesuffix('.service')}", "host": spec.name, "unit": service.unit,
                "kind": service.kind, "address": address, "active": units.get(service.unit, "inactive" if not up else "unknown")}
        item["running"] = item["active"] == "active"
        if service.kind == "scheduler":
            health = try_json(f"http://{address}/health") if item["running"] else None
            item["healthy"] = bool(health and health.get("status") == "healthy")
            item["release"] = health.get("version") if health else current_version(layout.releases_dir(spec.name))
            item["database"] = health.get("database") if health else None
            item["faults"] = read_faults(layout, spec.name)
        elif service.health:
            item["healthy"] = item["running"] and _http_ok(f"http://{address}{service.health}")
        elif service.kind == "postgres" and item["running"]:
            item["healthy"] = hosts.run(spec.name, f"pg_isready -q -h 127.0.0.1 -p {service.port + layout.port_offset}",
                                        check=False, timeout=15).returncode == 0
        elif service.kind == "redis" and item["running"]:
            pong = hosts.run(spec.name, f"redis-cli -p {service.port + layout.port_offset} ping", check=False, timeout=15).stdout.strip()
            item["healthy"] = pong == "PONG"
        else:
            item["healthy"] = item["running"]
        if service.kind == "prometheus" and item["running"]:
            alerts = try_json(f"http://{address}/api/v1/alerts")
            item["alerts"] = [{"alertname": a["labels"].get("alertname"), "state": a.get("state"), "instance": a["labels"].get("instance")}
                              for a in (alerts or {}).get("data", {}).get("alerts", [])]
        if service.kind == "webhook" and item["running"]:
            item["notifications"] = (try_json(f"http://{address}/health") or {}).get("notifications")
        services.append(item)
    return host, services


def cmd_status(layout: Layout, args) -> int:
    state = load_state(layout)
    host_rows: list[dict] = []
    services: list[dict] = []
    if state and (layout.root / "hosts").is_dir():
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(fleet.FLEET)) as pool:
            for host, host_services in pool.map(lambda spec: _host_status(layout, spec), fleet.FLEET):
                host_rows.append(host)
                services.extend(host_services)
    for running in recorded(state):
        services.append({"name": running.name, "host": "-", "unit": "-", "kind": running.kind, "pid": running.pid, "address": "",
                         "running": running.alive(), "healthy": running.alive(), "active": "running" if running.alive() else "stopped"})
    up = any(h["state"] == "running" for h in host_rows)
    if args.json:
        print(json.dumps({"state_dir": str(layout.root), "up": up, "started_at": (state or {}).get("started_at"),
                          "hosts": host_rows, "services": services}, indent=2))
    elif not up:
        print(f"lab is not running ({layout.root})")
    else:
        _print_table([[h["name"], ",".join(h["groups"]), h["ssh"], str(h["pid"] or "-"), h["state"], h.get("system_state", "-"),
                       "healthy" if h["healthy"] else "UNHEALTHY"] for h in host_rows],
                     ["HOST", "GROUPS", "SSH", "PID", "STATE", "SYSTEMD", "HEALTH"])
        print()
        rows = []
        for s in services:
            details = []
            if "release" in s:
                details.append(f"release {s['release']}")
                details.extend(f"fault {name} {json.dumps(spec, separators=(',', ':'))}" for name, spec in s["faults"].items())
            if s.get("alerts"):
                details.append("alerts: " + ", ".join(f"{a['alertname']}[{a['state']}] {a['instance']}" for a in s["alerts"]))
            if s.get("notifications") is not None:
                details.append(f"{s['notifications']} notifications received")
            rows.append([s["name"], s["address"] or "-", s["active"], "healthy" if s["healthy"] else "UNHEALTHY", "; ".join(details)])
        _print_table(rows, ["SERVICE", "ADDRESS", "UNIT", "HEALTH", "DETAILS"])
    if not up:
        return 3
    healthy = all(h["healthy"] for h in host_rows) and all(s["running"] and s["healthy"] for s in services)
    return 0 if healthy else 1


def cmd_ssh(layout: Layout, args) -> int:
    if args.host not in fleet.HOSTS:
        raise LabError(f"unknown host {args.host!r} (hosts: {', '.join(fleet.HOSTS)})")
    if not _host_alive(args.host):
        raise LabError(f"host {args.host} is not running in {layout.root}: run `lab up` first")
    remote = args.remote[1:] if args.remote[:1] == ["--"] else args.remote
    argv = hosts.ssh_command(args.host, " ".join(remote) if remote else None, tty=not remote and sys.stdin.isatty())
    os.execvp(argv[0], argv)
    return 0  # not reached


# --------------------------------------------------------------------------- faults


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, not {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1, not {value}")
    return value


def _endpoint(text: str) -> str:
    if text != "*" and not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must be a path such as /api/v1/schedules (or * for all), not {text!r}")
    return text


def _add_rate_and_endpoints(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(f"--{prefix}rate", type=_rate, default=0.5, help="share of matching requests that fail (default 0.5)")
    parser.add_argument(f"--{prefix}endpoints", nargs="+", type=_endpoint, default=list(DEFAULT_ENDPOINTS), metavar="PATH",
                        help=f"route paths that fail, * for all (default {' '.join(DEFAULT_ENDPOINTS)})")


def _add_error_burst_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=KINDS, default="database",
                        help="what breaks: database (503, sqlalchemy OperationalError), authentication (JWTError), "
                             "validation (pydantic ValidationError), other (KeyError); default database")
    _add_rate_and_endpoints(parser)


def _error_burst_settings(args: argparse.Namespace) -> dict:
    return {"rate": args.rate, "kind": args.kind, "endpoints": args.endpoints}


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not 0 < value <= 100000:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return value


@dataclass(frozen=True)
class FaultSpec:
    """A fault switch. ``how`` says what `on` does:

    file      the app hosts' fault file gets ``settings(args)`` (the backends act on it, no restart);
    process   a generator (lab/faultgen.py) runs on the machine until `off`;
    action    ``on(layout, args)`` / ``off(layout, args)`` do it (database edits, units, the ML system).
    """

    name: str
    how: str
    help: str
    alerts: tuple[str, ...]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    settings: Callable[[argparse.Namespace], dict] = lambda args: {}
    on: Callable | None = None
    off: Callable | None = None
    hosts_option: bool = True


def _opt(*names, _each: list[dict] | None = None, **kwargs) -> Callable[[argparse.ArgumentParser], None]:
    """Options of a fault's parser: one name with ``kwargs``, or several names with ``_each`` (a dict each)."""
    each = _each if _each is not None else [kwargs] * len(names)

    def add(parser: argparse.ArgumentParser) -> None:
        for name, options in zip(names, each):
            parser.add_argument(name, **options)
    return add


def _fault_process(layout: Layout, name: str, argv: list[str], env: dict | None = None) -> str:
    state = load_state(layout) or {}
    if any(r.name == f"fault:{name}" and r.alive() for r in recorded(state)):
        return "already on"
    running, _proc = start_process(f"fault:{name}", "fault", [str(venv_python()), str(LAB_DIR / "faultgen.py"), *argv], env or {},
                                   layout.root / "faults" / f"{name}.out", "")
    state.setdefault("services", []).append(asdict(running))
    save_state(layout, state)
    return f"generator pid {running.pid}"


def _stop_fault_process(layout: Layout, name: str) -> str:
    state = load_state(layout) or {}
    outcome = "not running"
    kept = []
    for running in recorded(state):
        if running.name == f"fault:{name}":
            outcome = stop_process(running)
        else:
            kept.append(asdict(running))
    state["services"] = kept
    save_state(layout, state)
    return outcome


def _app_targets(layout: Layout) -> str:
    return ",".join(f"http://{address}" for address in layout.app_addresses().values())


def _secrets(layout: Layout) -> dict:
    return json.loads((layout.root / "secrets.json").read_text(encoding="utf-8"))


def _dsn(layout: Layout) -> str:
    return layout.fleet(_secrets(layout)).database_url()


def _process_on(mode_args: Callable[[Layout, argparse.Namespace], list[str]], database: bool = False):
    def on(layout: Layout, args) -> str:
        env = {"FAULTGEN_DSN": _dsn(layout)} if database else {}
        return _fault_process(layout, args.fault_name, mode_args(layout, args), env)
    return on


def _process_off(layout: Layout, args) -> str:
    return _stop_fault_process(layout, args.fault_name)


def _psql(layout: Layout, sql_text: str, notices: bool = False, timeout: float = 60) -> str:
    """Run SQL in db1 as postgres (the lab's own admin path); ``notices`` adds what RAISE NOTICE said."""
    result = hosts.run("db1", f"cd /tmp && runuser -u postgres -- psql -q -X -At -v ON_ERROR_STOP=1 -p {layout.ports.postgres} -d {fleet.DATABASE} -f -",
                       input=sql_text, check=False, timeout=timeout)
    if result.returncode != 0:
        raise LabError(f"SQL in db1 failed: {result.stderr.strip()[-400:]}")
    return result.stdout + (result.stderr if notices else "")


def _unit(host: str, command: str) -> None:
    result = hosts.run(host, command, check=False, timeout=60)
    if result.returncode != 0:
        raise LabError(f"{host}: `{command}` failed: {(result.stderr or result.stdout).strip()[-300:]}")


def _crash_on(layout: Layout, args) -> str:
    targets = _selected_hosts(layout, args.hosts)
    for host in targets:
        faults = read_faults(layout, host)
        faults["crash_on_start"] = {"reason": "broken deployment"}
        write_json_atomic(layout.fault_file(host), faults)
        # the running process dies (as a crash would); systemd's restarts then fail at startup until the unit gives up
        hosts.run(host, "systemctl kill --signal=SIGKILL residency-scheduler-backend.service", check=False, timeout=30)
    return f"residency-scheduler-backend crashed on {', '.join(targets)} (restarts fail until off)"


def _crash_off(layout: Layout, args) -> str:
    targets = _selected_hosts(layout, args.hosts)
    for host in targets:
        faults = read_faults(layout, host)
        faults.pop("crash_on_start", None)
        write_json_atomic(layout.fault_file(host), faults)
        _unit(host, "systemctl reset-failed residency-scheduler-backend.service; systemctl restart residency-scheduler-backend.service")
    _wait_for_health(layout, targets, lambda h: h.get("status") == "healthy", "healthy after restart", timeout=20)
    return f"residency-scheduler-backend running again on {', '.join(targets)}"


def _cache_flush_on(layout: Layout, args) -> str:
    targets = _selected_hosts(layout, args.hosts)
    for host in targets:
        faults = read_faults(layout, host)
        # a runtime override of the running backends' TTL: a restart puts the configured SCHEDULE_CACHE_TTL back
        faults["cache_ttl"] = {"ttl": args.ttl, "until_restart": True, "armed_at": round(time.time(), 3)}
        write_json_atomic(layout.fault_file(host), faults)
    _wait_for_health(layout, targets, lambda h: "cache_ttl" in h.get("faults", {}), "fault cache_ttl on")
    flushed = hosts.run("cache1", f"redis-cli -p {layout.ports.redis} FLUSHALL", check=False, timeout=30).stdout.strip()
    return f"Redis FLUSHALL: {flushed}; schedule cache TTL {args.ttl}s on {', '.join(targets)}"


def _cache_flush_off(layout: Layout, args) -> str:
    targets = _selected_hosts(layout, args.hosts)
    for host in targets:
        faults = read_faults(layout, host)
        faults.pop("cache_ttl", None)
        write_json_atomic(layout.fault_file(host), faults)
    return f"schedule cache TTL back to {fleet.SCHEDULE_CACHE_TTL}s on {', '.join(targets)}"


def _large_export_on(layout: Layout, args) -> str:
    healthy = [a for a in layout.app_addresses().values() if (try_json(f"http://{a}/health") or {}).get("status") == "healthy"]
    if not healthy:
        raise LabError("no healthy backend to export from")
    address = healthy[0]
    login = urllib.request.Request(f"http://{address}/api/v1/auth/login", method="POST", headers={"content-type": "application/json"},
                                   data=json.dumps({"username": args.user, "password": "lab-password"}).encode())
    with _OPENER.open(login, timeout=10) as response:
        token = json.loads(response.read())["access_token"]
    # a first small export, then the large one once Prometheus has scraped the user's counter (a series
    # that first appears at 5000 shows no increase())
    for limit, pause in ((1, 7.0), (args.records, 0.0)):
        export = urllib.request.Request(f"http://{address}/api/v1/export?limit={limit}", headers={"authorization": f"Bearer {token}"})
        with _OPENER.open(export, timeout=60) as response:
            count = json.loads(response.read())["count"]
        time.sleep(pause)
    return f"{args.user} exported {count} records from {address}"


def _large_export_off(_layout: Layout, _args) -> str:
    return "nothing to undo (the export happened); the alert clears when the window passes"


ACGME_STATE = "acgme_fault.json"


def _acgme_on(layout: Layout, _args) -> str:
    """A schedule edit: the supervising faculty of one future weekday block are taken off it, leaving every
    PGY-1 resident on that block unsupervised (one pgy1_supervision violation each). The removed rows are kept."""
    return _remove_supervision(layout, layout.root / ACGME_STATE, "AM", 1)


def _acgme_off(layout: Layout, _args) -> str:
    return _restore_supervision(layout, layout.root / ACGME_STATE)


REPEATED_STATE = "acgme_repeated_fault.json"


def _acgme_repeated_on(layout: Layout, _args) -> str:
    """The same edit on the next three weekday afternoons (an attending's absence nobody covered): every PGY-1 on
    them breaks pgy1_supervision three times, the same pattern repeated."""
    return _remove_supervision(layout, layout.root / REPEATED_STATE, "PM", 3)


def _acgme_repeated_off(layout: Layout, _args) -> str:
    return _restore_supervision(layout, layout.root / REPEATED_STATE)


def _remove_supervision(layout: Layout, path: Path, time_of_day: str, blocks: int) -> str:
    """Take the supervising faculty off the next ``blocks`` future weekday blocks (``time_of_day``) with PGY-1
    residents; the removed rows are kept in ``path`` for ``off``. Prints the blocks and the planted violations."""
    if path.exists():
        return "already on: " + path.read_text(encoding="utf-8")
    rows = _psql(layout, f"""
WITH target AS (
  SELECT b.id FROM blocks b
  WHERE b.date > current_date + 1 AND NOT b.is_weekend AND b.time_of_day = '{time_of_day}'
    AND EXISTS (SELECT 1 FROM assignments a JOIN people p ON p.id = a.person_id WHERE a.block_id = b.id AND p.pgy_level = 1)
  ORDER BY b.date LIMIT {int(blocks)})
DELETE FROM assignments a USING target, people f
WHERE a.block_id = target.id AND f.id = a.person_id AND f.type = 'faculty' AND a.role = 'supervising'
RETURNING json_build_object('id', a.id, 'block_id', a.block_id, 'person_id', a.person_id,
  'rotation_template_id', a.rotation_template_id, 'role', a.role, 'created_by', a.created_by, 'created_at', a.created_at);
""")
    removed = [json.loads(line) for line in rows.splitlines() if line.strip().startswith("{")]
    if not removed:
        raise LabError("no future weekday block with PGY-1 residents and supervising faculty found")
    block_ids = sorted({int(r["block_id"]) for r in removed})
    interns = _psql(layout, f"SELECT a.person_id FROM assignments a JOIN people p ON p.id = a.person_id "
                            f"WHERE a.block_id IN ({','.join(map(str, block_ids))}) AND p.pgy_level = 1 ORDER BY 1;")
    planted = {"block_id": block_ids[0], "block_ids": block_ids, "removed": removed,
               "violations": [{"rule": "pgy1_supervision", "person_id": int(x)} for x in interns.split()]}
    write_json_atomic(path, planted)
    if len(block_ids) == 1:
        return json.dumps({"block_id": block_ids[0], "violations": planted["violations"]})
    return json.dumps({"block_ids": block_ids, "violations": planted["violations"]})


def _restore_supervision(layout: Layout, path: Path) -> str:
    if not path.exists():
        return "not on"
    planted = json.loads(path.read_text(encoding="utf-8"))
    values = ",\n".join(
        f"({int(r['id'])}, {int(r['block_id'])}, {int(r['person_id'])}, {int(r['rotation_template_id']) if r['rotation_template_id'] is not None else 'NULL'}, "
        f"'{r['role']}', '{str(r['created_by']).replace(chr(39), chr(39) * 2)}', '{r['created_at']}')" for r in planted["removed"])
    # ON CONFLICT: a runbook may have put a supervisor back on the block already
    _psql(layout, "INSERT INTO assignments (id, block_id, person_id, rotation_template_id, role, created_by, created_at) VALUES\n"
                  f"{values} ON CONFLICT DO NOTHING;")
    path.unlink()
    blocks = planted.get("block_ids") or [planted["block_id"]]
    return f"restored {len(planted['removed'])} supervising assignment(s) of block(s) {', '.join(map(str, blocks))}"


HOURS_STATE = "work_hours_fault.json"


def _work_hours_on(layout: Layout, _args) -> str:
    """Schedule edit: a PGY-2 resident without weekend duty this week also works Saturday and Sunday (4 more
    half-day blocks, 24 h): 84 h this week, within the four-week average and every other ACGME rule."""
    path = layout.root / HOURS_STATE
    if path.exists():
        return "already on: " + path.read_text(encoding="utf-8")
    rows = _psql(layout, """
WITH week AS (SELECT date_trunc('week', current_date)::date AS monday),
person AS (
  SELECT p.id FROM people p, week WHERE p.type = 'resident' AND p.pgy_level = 2 AND NOT EXISTS (
    SELECT 1 FROM assignments a JOIN blocks b ON b.id = a.block_id
    WHERE a.person_id = p.id AND b.date BETWEEN week.monday + 5 AND week.monday + 6)
  ORDER BY p.id LIMIT 1),
rotation AS (SELECT a.rotation_template_id FROM assignments a JOIN person ON a.person_id = person.id ORDER BY a.id LIMIT 1)
INSERT INTO assignments (block_id, person_id, rotation_template_id, role, created_by)
SELECT b.id, person.id, rotation.rotation_template_id, 'primary', 'lab-fault:work_hours'
FROM blocks b, person, rotation, week WHERE b.date BETWEEN week.monday + 5 AND week.monday + 6
RETURNING json_build_object('id', id, 'person_id', person_id);
""")
    added = [json.loads(line) for line in rows.splitlines() if line.strip().startswith("{")]
    if not added:
        raise LabError("no PGY-2 resident free this weekend to give extra hours to")
    write_json_atomic(path, {"person_id": added[0]["person_id"], "assignment_ids": [a["id"] for a in added]})
    return json.dumps({"person_id": added[0]["person_id"], "added_blocks": len(added)})


def _work_hours_off(layout: Layout, _args) -> str:
    path = layout.root / HOURS_STATE
    if not path.exists():
        return "not on"
    planted = json.loads(path.read_text(encoding="utf-8"))
    ids = ",".join(str(int(i)) for i in planted["assignment_ids"])
    _psql(layout, f"DELETE FROM assignments WHERE id IN ({ids}) AND created_by = 'lab-fault:work_hours';")
    path.unlink()
    return f"removed {len(planted['assignment_ids'])} weekend assignment(s) of person {planted['person_id']}"


MISSING_INDEX_STATE = "missing_index_fault.json"
ARCHIVE = "audit_log_archive"
# The activity feed's statement, as the backend runs it (lab/scheduler/repository.py PostgresRepository.audit).
FEED_QUERY = ("SELECT id, occurred_at, user_id, action, entity, entity_id FROM audit_log "
              "WHERE occurred_at >= {since} ORDER BY occurred_at DESC LIMIT 50")


def _missing_index_on(layout: Layout, args) -> str:
    """Three years of audit history land in an archive table that inherits audit_log, attached without the
    occurred_at index: the activity feed (/api/v1/audit) now reads it by a sequential scan. The archive grows in
    chunks until the feed's statement takes --target seconds on this machine now (so it is slow whatever the
    load), then dashboards read the feed on --hosts (default app1) one request after the other."""
    path = layout.root / MISSING_INDEX_STATE
    if path.exists():
        return "already on: " + path.read_text(encoding="utf-8")
    targets = _selected_hosts(layout, args.hosts or "app1")
    chunk, cap = 250_000, max(1, int(args.max_rows) // 250_000)
    out = _psql(layout, f"""
CREATE UNLOGGED TABLE {ARCHIVE} () INHERITS (audit_log);
ALTER TABLE {ARCHIVE} OWNER TO {fleet.DB_USER};
ALTER TABLE {ARCHIVE} SET (parallel_workers = 0, autovacuum_enabled = false);
DO $$
DECLARE chunks int := 0; took float8 := 0; t0 timestamptz; since timestamptz := now() - interval '24 hours';
BEGIN
  LOOP
    INSERT INTO {ARCHIVE} (id, occurred_at, user_id, action, entity, entity_id)
    SELECT -g, timestamptz '2023-01-01 00:00+00' + g * interval '37 seconds', NULL,
           (ARRAY['schedule.viewed', 'assignment.updated', 'assignment.created', 'export'])[1 + g % 4], 'assignments', (g % 3000)::text
    FROM generate_series(chunks * {chunk} + 1, (chunks + 1) * {chunk}) AS g;
    chunks := chunks + 1;
    COMMIT;
    PERFORM count(*) FROM {ARCHIVE};  -- sets the new rows' hint bits, as the first reads would
    t0 := clock_timestamp();
    PERFORM * FROM ({FEED_QUERY.format(since="since")}) AS feed;  -- a constant, as the backend's literal
    took := extract(epoch FROM clock_timestamp() - t0);
    EXIT WHEN took >= {float(args.target)} OR chunks >= {cap};
  END LOOP;
  RAISE NOTICE 'lab: % rows, feed %s', chunks * {chunk}, round(took::numeric, 2);
END $$;
ANALYZE {ARCHIVE};
-- the lab's own statements (this one, as postgres) are not the system's: keep them out of pg_stat_statements
SELECT pg_stat_statements_reset((SELECT oid FROM pg_roles WHERE rolname = current_user)) \\g /dev/null
SELECT json_build_object('rows', (SELECT count(*) FROM {ARCHIVE}));
""", notices=True, timeout=600)
    rows = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])["rows"]
    notice = next((line.split("lab: ", 1)[1] for line in out.splitlines() if "lab: " in line), "")
    seconds = float(notice.rsplit(" ", 1)[-1].rstrip("s") or 0) if notice else 0.0
    outcome = _fault_process(layout, args.fault_name, ["audit_reads", "--targets", ",".join(f"http://{layout.app_addresses()[h]}" for h in targets),
                                                       "--readers", str(args.readers)])
    state = {"table": f"public.{ARCHIVE}", "rows": rows, "feed_seconds": seconds, "readers_on": targets,
             "index": f"{ARCHIVE}_occurred_at_idx",
             "statement": FEED_QUERY.format(since="now() - interval '24 hours'")}
    write_json_atomic(path, state)
    return json.dumps({**state, "readers": outcome})


def _missing_index_off(layout: Layout, args) -> str:
    stopped = _stop_fault_process(layout, args.fault_name)
    _psql(layout, f"DROP TABLE IF EXISTS {ARCHIVE};")  # its rows and any index added to it since
    (layout.root / MISSING_INDEX_STATE).unlink(missing_ok=True)
    return f"dashboards {stopped}; {ARCHIVE} dropped (audit_log as before)"


def _ml(action: str):
    """A Heart Disease fault (lab/heart_disease/faults.py), run inside ml1 where the units run."""
    def run(layout: Layout, args) -> str:
        name = ML_FAULTS[args.fault_name]
        python = REPO / ".venv" / "bin" / "python"
        extra = " --full" if action == "off" else ""
        result = hosts.run("ml1", f"cd {REPO} && {python} -m lab.heart_disease.faults {name} {action} --home {fleet.HEART_DISEASE_HOME}{extra}",
                           check=False, timeout=120)
        if result.returncode != 0:
            raise LabError(f"ml1: heart_disease fault {name} {action} failed: {(result.stderr or result.stdout).strip()[-500:]}")
        if action == "off" and name in ("crash_api", "fail_worker"):
            unit, kind = ("heart-disease-api", "ml_api") if name == "crash_api" else ("heart-disease-worker", "ml_worker")
            # only a unit that is not running: off must not restart what a runbook already brought back
            _unit("ml1", f"systemctl is-active --quiet {unit}.service || "
                         f"{{ systemctl reset-failed {unit}.service; systemctl restart {unit}.service; }}")
            url = f"http://{layout.ports.address('ml1', kind)}/health"
            deadline = time.monotonic() + 30
            while not _http_ok(url):
                if time.monotonic() > deadline:
                    raise LabError(f"ml1: {unit} not healthy at {url} 30s after its restart")
                time.sleep(0.3)
        try:
            entry = json.loads(result.stdout)
        except ValueError:
            return result.stdout.strip()[-300:]
        wanted = ("version", "previous_version", "mode", "key_id", "source_network", "restored", "rotated", "api_reloaded", "burst_scored",
                  "shifts", "on")
        keep = {k: v for k, v in entry.items() if k in wanted} if isinstance(entry, dict) else entry
        return json.dumps(keep, separators=(",", ":"))[:300]
    return run


def _ml_latency(action: str):
    """ml_latency: the API's injected delay (the fault module in ml1), and the prediction clients on the machine
    (lab.heart_disease.traffic, 2 predictions/s through /predict) while it is on, so the latency is measured."""
    def run(layout: Layout, args) -> str:
        if action == "off":
            stopped = _stop_fault_process(layout, args.fault_name)
            return f"{_ml('off')(layout, args)}; prediction clients {stopped}"
        outcome = _ml("on")(layout, args)
        state = load_state(layout) or {}
        if not any(r.name == f"fault:{args.fault_name}" and r.alive() for r in recorded(state)):
            running, _proc = start_process(f"fault:{args.fault_name}", "fault",
                                           [str(venv_python()), "-m", "lab.heart_disease.traffic", "--home",
                                            str(layout.host_dir("ml1") / "heart-disease"), "--rate", "2"],
                                           {"PYTHONPATH": str(REPO)}, layout.root / "faults" / f"{args.fault_name}.out", "")
            state.setdefault("services", []).append(asdict(running))
            save_state(layout, state)
        return outcome
    return run


ML_FAULTS = {"ml_crash": "crash_api", "ml_worker_crash": "fail_worker", "bad_model": "bad_model", "corrupt_model": "corrupt_model", "drift": "drift",
             "leaked_credential": "leaked_credential", "ml_latency": "latency"}


def _file_fault(name: str, help_text: str, alerts: tuple[str, ...], add_arguments=lambda parser: None, settings=lambda args: {},
                until_restart: bool = False) -> FaultSpec:
    """A fault the backend reads from its fault file. With ``until_restart`` it is a condition of the running process (a
    leak, a runaway thread): the settings carry ``armed_at`` and a backend started later ignores it, so restarting the
    service really clears it (lab/scheduler/faults.py)."""
    if until_restart:
        return FaultSpec(name, "file", help_text + " (until the backend restarts)", alerts, add_arguments,
                         lambda args: {**settings(args), "until_restart": True, "armed_at": round(time.time(), 3)})
    return FaultSpec(name, "file", help_text, alerts, add_arguments, settings)


FAULTS = {
    spec.name: spec for spec in (
        FaultSpec("error_burst", "file", "a share of API requests fail with 5xx and an ERROR log record", ("HighErrorRate",),
                  _add_error_burst_options, _error_burst_settings),
        _file_fault("slow_responses", "API requests wait DELAY seconds first", ("SlowResponseTime", "HighLatencyP95"),
                    _opt("--delay", type=_positive, default=2.5, help="seconds (default 2.5)"), lambda args: {"delay": args.delay},
                    until_restart=True),
        _file_fault("pool_leak", "connections are checked out of the backend's pool and never returned, up to exhaustion",
                    ("DatabaseConnectionPoolExhaustion",), until_restart=True),
        _file_fault("cpu_burn", "threads of the backend hash in a loop", ("HighCPUUsage",),
                    _opt("--duty", "--threads", _each=[{"type": _rate, "default": 1.0, "help": "share of time busy (default 1)"},
                                                       {"type": int, "choices": range(1, 9), "default": 2, "help": "threads, 1-8 (default 2)"}]),
                    lambda args: {"duty": args.duty, "threads": args.threads}, until_restart=True),
        _file_fault("memory_leak", "the backend allocates and keeps memory until its host's budget is nearly gone", ("LowMemory",),
                    _opt("--limit-mb", type=int, default=360, help="stop leaking at this many MB (default 360 of 384)"),
                    lambda args: {"limit_mb": args.limit_mb}, until_restart=True),
        FaultSpec("cache_flush", "action", "Redis FLUSHALL and schedule cache entries that live TTL seconds", ("LowCacheHitRate",),
                  _opt("--ttl", type=_positive, default=0.05, help="seconds (default 0.05)"), on=_cache_flush_on, off=_cache_flush_off),
        FaultSpec("service_crash", "action", "the backend is killed and fails at every restart (failed unit)",
                  ("ServiceDown",), on=_crash_on, off=_crash_off),
        FaultSpec("auth_spray", "process", "failed logins: one IP trying many accounts (--mode accounts) or one account from many IPs (--mode ips)",
                  ("FailedAuthenticationSpike", "SuspiciousActivityDetected"),
                  _opt("--mode", "--rate", _each=[{"choices": ("accounts", "ips"), "default": "accounts"},
                                                  {"type": _positive, "default": 5.0, "help": "attempts per second (default 5)"}]),
                  on=_process_on(lambda layout, args: ["auth_spray", "--targets", _app_targets(layout), "--mode", args.mode,
                                                       "--rate", str(args.rate)]), off=_process_off, hosts_option=False),
        FaultSpec("suspicious_activity", "process", "requests with injection and path traversal patterns", ("SuspiciousActivityDetected",),
                  on=_process_on(lambda layout, args: ["probes", "--targets", _app_targets(layout)]), off=_process_off, hosts_option=False),
        FaultSpec("large_export", "action", "one user exports RECORDS schedule records at once", ("LargeDataExport",),
                  _opt("--records", "--user", _each=[{"type": int, "default": 5000}, {"default": "avery.mensah@residency.lab"}]),
                  on=_large_export_on, off=_large_export_off, hosts_option=False),
        FaultSpec("acgme_violation", "action", "a schedule edit takes the supervising faculty off a block PGY-1 residents work",
                  ("ACGMEViolationDetected",), on=_acgme_on, off=_acgme_off, hosts_option=False),
        FaultSpec("acgme_repeated", "action", "the supervising faculty are taken off the next three weekday afternoons: "
                  "each PGY-1 on them breaks pgy1_supervision three times", ("RepeatedACGMEViolations", "ACGMEViolationDetected"),
                  on=_acgme_repeated_on, off=_acgme_repeated_off, hosts_option=False),
        FaultSpec("work_hours", "action", "a schedule edit gives a PGY-2 resident the whole weekend too: 84 h this week",
                  ("WorkHourThresholdApproaching", "ACGMEWorkHoursWarning", "ACGMEWorkHoursViolation"),
                  on=_work_hours_on, off=_work_hours_off, hosts_option=False),
        FaultSpec("missing_index", "action", "audit history in an archive table without the occurred_at index: the activity feed "
                  "reads it by a sequential scan (> 1 s), dashboards on --hosts (default app1) read the feed", ("SlowDatabaseQueries",),
                  _opt("--target", "--max-rows", "--readers",
                       _each=[{"type": _positive, "default": 3.0, "help": "grow the archive until the feed takes this many seconds (default 3)"},
                              {"type": int, "default": 12_000_000, "help": "at most this many rows (default 12000000)"},
                              {"type": int, "choices": range(1, 5), "default": 2, "help": "dashboards per host (default 2)"}]),
                  on=_missing_index_on, off=_missing_index_off),
        FaultSpec("pg_connections", "process", "idle sessions opened until PostgreSQL refuses more (max_connections)",
                  ("PostgreSQLHighConnections",),
                  on=_process_on(lambda layout, args: ["pg", "--mode", "connections", "--count", "100"], database=True),
                  off=_process_off, hosts_option=False),
        FaultSpec("pg_long_queries", "process", "long-running queries (a runaway report)", ("PostgreSQLLongRunningQueries",),
                  on=_process_on(lambda layout, args: ["pg", "--mode", "long_queries", "--count", "3"], database=True),
                  off=_process_off, hosts_option=False),
        FaultSpec("pg_idle_in_transaction", "process", "transactions that took row locks and sit idle", ("PostgreSQLIdleInTransaction",),
                  on=_process_on(lambda layout, args: ["pg", "--mode", "idle_in_transaction", "--count", "3"], database=True),
                  off=_process_off, hosts_option=False),
        FaultSpec("ml_crash", "action", "heart-disease-api is killed (failed unit)", ("ServiceDown",), on=_ml("on"), off=_ml("off"), hosts_option=False),
        FaultSpec("ml_worker_crash", "action", "heart-disease-worker exits with status 1 (failed unit)", ("ServiceDown",),
                  on=_ml("on"), off=_ml("off"), hosts_option=False),
        FaultSpec("bad_model", "action", "a model trained on shuffled labels is deployed", ("ModelQualityBelowFloor",),
                  on=_ml("on"), off=_ml("off"), hosts_option=False),
        FaultSpec("corrupt_model", "action", "the live model file's bytes are damaged; the API cannot load it", ("ModelLoadFailure",),
                  on=_ml("on"), off=_ml("off"), hosts_option=False),
        FaultSpec("drift", "action", "prediction inputs drift away from the training data", ("FeatureDrift",),
                  on=_ml("on"), off=_ml("off"), hosts_option=False),
        FaultSpec("leaked_credential", "action", "a partner API key leaks and is used from an unknown network, with guessing",
                  ("HeartDiseaseAuthFailureSpike",), on=_ml("on"), off=_ml("off"), hosts_option=False),
        FaultSpec("ml_latency", "action", "/predict answers slowly (prediction clients send 2/s while it is on)", ("HeartDiseaseSlowPredictions",),
                  on=_ml_latency("on"), off=_ml_latency("off"), hosts_option=False),
    )
}


def read_faults(layout: Layout, host: str) -> dict:
    try:
        return json.loads(layout.fault_file(host).read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise LabError(f"fault file {layout.fault_file(host)} is not valid JSON: {exc}") from None


# --------------------------------------------------------------------------- commands


def _selected_hosts(layout: Layout, names: str | None) -> list[str]:
    known = list(HOST_NAMES)
    if not names:
        return known
    chosen = [h.strip() for h in names.split(",") if h.strip()]
    unknown = [h for h in chosen if h not in known]
    if unknown or not chosen:
        raise LabError(f"--hosts: unknown host {', '.join(unknown) or repr(names)} (hosts: {', '.join(known)})")
    for host in chosen:
        if not layout.host_dir(host).is_dir():
            raise LabError(f"host {host} has no state in {layout.root}: run `lab up` first")
    return chosen


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


LAB_ENTRIES = {MARKER, STATE_FILE, "hosts", "ssh", ".ssh.lock", "secrets.json", "traffic", "prometheus", "faults", ACGME_STATE, HOURS_STATE,
               MISSING_INDEX_STATE, REPEATED_STATE}


def _reset_state_dir(root: Path) -> None:
    """Empty the state dir: only one holding the lab's marker, or nothing but what the lab makes."""
    if root.exists():
        entries = {entry.name for entry in root.iterdir()}
        if entries and MARKER not in entries and not entries <= LAB_ENTRIES:
            raise LabError(f"{root} exists and is not a lab state directory (no {MARKER}): refusing to wipe it; set LAB_STATE_DIR elsewhere")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("state of lab/labctl.py; wiped by `lab up`\n", encoding="utf-8")


def _tail(path: Path, lines: int = 8) -> str:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        tail = []
    return "\n".join("    " + line for line in tail) or "    (no output)"


def _wait_for_health(layout: Layout, host_names: list[str], accept: Callable[[dict], bool], what: str, timeout: float = 5.0) -> None:
    """Tell whether running apps picked up a change (they re-read faults and releases by themselves)."""
    addresses = layout.app_addresses()
    pending = [h for h in host_names if try_json(f"http://{addresses[h]}/health") is not None]
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [h for h in pending if not accept(try_json(f"http://{addresses[h]}/health") or {})]
        if pending:
            time.sleep(0.2)
    if pending:
        raise LabError(f"{', '.join(pending)} did not report {what} within {timeout:.0f}s")


def cmd_fault(layout: Layout, args) -> int:
    if args.fault_name in (None, "list"):
        rows = []
        for host in HOST_NAMES:
            if layout.host_dir(host).is_dir():
                faults = read_faults(layout, host)
                rows.extend([host, name, json.dumps(spec, separators=(",", ":"))] for name, spec in faults.items())
        if rows:
            _print_table(rows, ["HOST", "FAULT", "SETTINGS"])
        else:
            print("no faults active")
        return 0
    spec = FAULTS[args.fault_name]
    if spec.how != "file":
        outcome = (spec.on if args.action == "on" else spec.off)(layout, args)
        print(f"fault {spec.name} {args.action}: {outcome}")
        return 0
    targets = _selected_hosts(layout, getattr(args, "hosts", None))
    settings = spec.settings(args) if args.action == "on" else None
    for host in targets:
        faults = read_faults(layout, host)
        if settings is None:
            faults.pop(spec.name, None)
        else:
            faults[spec.name] = settings
        write_json_atomic(layout.fault_file(host), faults)
    _wait_for_health(layout, targets, lambda h: (spec.name in h.get("faults", {})) == (settings is not None),
                     f"fault {spec.name} {args.action}")
    detail = f": {json.dumps(settings, separators=(',', ':'))}" if settings else ""
    print(f"fault {spec.name} {args.action} for {', '.join(targets)}{detail}")
    return 0


def cmd_deploy(layout: Layout, args) -> int:
    if not VERSION_PATTERN.match(args.version) or args.version == "current":
        raise LabError(f"VERSION must look like v1.5.0 (letters, digits, . _ + -), not {args.version!r}")
    targets = _selected_hosts(layout, args.hosts)
    exists = [h for h in targets if (layout.releases_dir(h) / args.version).exists()]
    if exists:
        raise LabError(f"release {args.version} already exists on {', '.join(exists)}: pick a new version")
    defect = {"rate": args.defect_rate, "kind": args.defect, "endpoints": args.defect_endpoints} if args.defect else None
    now = datetime.now(timezone.utc).astimezone()
    for host in targets:
        write_release(layout.releases_dir(host), args.version, now, defect)
        switch_current(layout.releases_dir(host), args.version)
    _wait_for_health(layout, targets, lambda h: h.get("version") == args.version, f"release {args.version}")
    print(f"deployed {args.version} on {', '.join(targets)}" + (f" with defect {json.dumps(defect, separators=(',', ':'))}" if defect else ""))
    return 0


def cmd_rollback(layout: Layout, args) -> int:
    targets = _selected_hosts(layout, args.hosts)
    for host in targets:
        releases_dir = layout.releases_dir(host)
        current = current_version(releases_dir)
        versions = [r["version"] for r in list_releases(releases_dir)]
        if args.to:
            if args.to not in versions:
                raise LabError(f"--to: no release {args.to} on {host} (releases: {', '.join(versions)})")
            target = args.to
        else:
            older = versions[:versions.index(current)] if current in versions else []
            if not older:
                raise LabError(f"{host}: no release before {current} to roll back to")
            target = older[-1]
        switch_current(releases_dir, target)
        _wait_for_health(layout, [host], lambda h, t=target: h.get("version") == t, f"release {target}")
        print(f"{host}: rolled back {current} -> {target}")
    return 0


def cmd_alerts(layout: Layout, args) -> int:
    try:
        alerts = http_json(f"http://{layout.prometheus_address}/api/v1/alerts")["data"]["alerts"]
    except (OSError, ValueError, KeyError) as exc:
        raise LabError(f"cannot read alerts from Prometheus at http://{layout.prometheus_address}: {exc}") from None
    if args.json:
        print(json.dumps(alerts, indent=2))
    elif not alerts:
        print("no active alerts")
    else:
        _print_table([[a["labels"].get("alertname", ""), a.get("state", ""), a["labels"].get("severity", ""), a["labels"].get("instance", ""),
                       a.get("activeAt", ""), a.get("value", "")] for a in alerts],
                     ["ALERT", "STATE", "SEVERITY", "INSTANCE", "ACTIVE SINCE", "VALUE"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="boot the fleet (fresh state) and start traffic").set_defaults(run=cmd_up)
    commands.add_parser("down", help="stop every host and the traffic; nothing stays running or mounted").set_defaults(run=cmd_down)
    status = commands.add_parser("status", help="hosts, units, health, releases, faults (exit 0 healthy, 1 unhealthy, 3 not running)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    fault = commands.add_parser("fault", help="switch faults on and off")
    fault.set_defaults(run=cmd_fault, fault_name=None)
    fault_names = fault.add_subparsers(dest="fault_name", metavar="FAULT")
    fault_names.add_parser("list", help="active faults per host")
    for spec in FAULTS.values():
        one = fault_names.add_parser(spec.name, help=f"{spec.help} (alerts: {', '.join(spec.alerts)})")
        one.add_argument("action", choices=("on", "off"))
        if spec.hosts_option:
            one.add_argument("--hosts", help="comma-separated app hosts (default all)")
        spec.add_arguments(one)

    deploy = commands.add_parser("deploy", help="deploy a new release (optionally defective) and switch to it")
    deploy.add_argument("version")
    deploy.add_argument("--defect", choices=KINDS, help="the release fails requests like an error_burst of this kind")
    deploy.add_argument("--hosts", help="comma-separated hosts (default all)")
    _add_rate_and_endpoints(deploy, prefix="defect-")
    deploy.set_defaults(run=cmd_deploy)

    rollback = commands.add_parser("rollback", help="switch back to the previous release")
    rollback.add_argument("--to", help="this release instead of the previous one")
    rollback.add_argument("--hosts", help="comma-separated hosts (default all)")
    rollback.set_defaults(run=cmd_rollback)

    ssh = commands.add_parser("ssh", help="ssh into a host as root: ssh HOST [-- COMMAND...]")
    ssh.add_argument("host")
    ssh.add_argument("remote", nargs=argparse.REMAINDER)
    ssh.set_defaults(run=cmd_ssh)

    alerts = commands.add_parser("alerts", help="Prometheus's active alerts")
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(run=cmd_alerts)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        layout = Layout.from_env()
        os.environ["LAB_STATE_DIR"] = str(layout.root)  # lab/hosts.py reads it
        return args.run(layout, args)
    except (LabError, hosts.HostError, fleet.FleetError) as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
