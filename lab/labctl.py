"""lab: start, inspect and break the local Residency Scheduler lab (loopback only).

    lab up | down | status [--json]
    lab fault list | fault error_burst on [--rate R] [--kind K] [--endpoints ...] [--hosts app1,app2] | fault error_burst off
    lab deploy VERSION [--defect KIND] [--hosts ...] | lab rollback [--to VERSION] [--hosts ...]
    lab alerts [--json]

Standard library only. Services run with the repository's venv python; every
process is started in its own session and stopped by its recorded process
group, never by name. State lives in $LAB_STATE_DIR (default <repo>/.lab).
"""

from __future__ import annotations

import argparse
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
from scheduler.errors import DEFAULT_ENDPOINTS, KINDS  # noqa: E402  (stdlib-only module shared with the app)

STATE_FILE = "lab.json"
MARKER = ".lab-state"  # only a directory holding this marker is ever wiped by `up`
RULES_DIR = LAB_DIR / "prometheus" / "rules"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# The fleet: one row per app host. Ports move together with LAB_PORT_OFFSET.
APP_HOSTS = (("app1", 18001), ("app2", 18002))
HOST_NAMES = tuple(name for name, _port in APP_HOSTS)
PROMETHEUS_PORT = 19090
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

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    def releases_dir(self, host: str) -> Path:
        return self.host_dir(host) / "releases"

    def fault_file(self, host: str) -> Path:
        return self.host_dir(host) / "faults.json"

    def app_port(self, base_port: int) -> int:
        return base_port + self.port_offset

    @property
    def prometheus_address(self) -> str:
        return f"127.0.0.1:{PROMETHEUS_PORT + self.port_offset}"

    def app_addresses(self) -> dict[str, str]:
        return {name: f"127.0.0.1:{self.app_port(port)}" for name, port in APP_HOSTS}


def venv_python() -> Path:
    python = Path(os.environ.get("LAB_PYTHON") or REPO / ".venv" / "bin" / "python")
    if not os.access(python, os.X_OK):
        raise LabError(f"no Python at {python}: create the venv (python3 -m venv .venv && .venv/bin/pip install -r requirements/dev.txt) or set LAB_PYTHON")
    return python


def prometheus_binary() -> str:
    binary = os.environ.get("LAB_PROMETHEUS") or shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(binary, os.X_OK):
        raise LabError(f"no Prometheus at {binary}: install the Debian package (apt-get install -y prometheus) or set LAB_PROMETHEUS")
    return binary


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


# --------------------------------------------------------------------------- services


@dataclass
class ServiceSpec:
    """How to prepare, start and check one service of the lab."""

    name: str
    kind: str
    stage: int  # services of a stage start together; the next stage waits for them to be ready
    address: str
    argv: Callable[[], list[str]]
    log: Path
    prepare: Callable[[], None] = lambda: None
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[], str | None] = lambda: None  # None when ready, else what is missing
    describe: str = ""


def _app_ready(address: str) -> Callable[[], str | None]:
    def check() -> str | None:
        health = try_json(f"http://{address}/health")
        return None if health and health.get("status") == "healthy" else f"GET http://{address}/health did not answer healthy"

    return check


def _prometheus_ready(layout: Layout) -> Callable[[], str | None]:
    expected = set(layout.app_addresses().values())

    def check() -> str | None:
        targets = try_json(f"http://{layout.prometheus_address}/api/v1/targets?state=active")
        if not targets:
            return f"Prometheus API at http://{layout.prometheus_address} did not answer"
        health = {t["labels"].get("instance"): t.get("health") for t in targets["data"]["activeTargets"]}
        down = sorted(f"{instance} ({health.get(instance, 'missing')})" for instance in expected if health.get(instance) != "up")
        return f"Prometheus targets not up yet: {', '.join(down)}" if down else None

    return check


def _prepare_app_host(layout: Layout, host: str) -> Callable[[], None]:
    def prepare() -> None:
        (layout.host_dir(host) / "log").mkdir(parents=True, exist_ok=True)
        releases_dir = layout.releases_dir(host)
        releases_dir.mkdir(parents=True, exist_ok=True)
        now = datetime.now(timezone.utc).astimezone()
        for version, days_ago in SEED_RELEASES:
            write_release(releases_dir, version, now - timedelta(days=days_ago))
        switch_current(releases_dir, SEED_RELEASES[-1][0])
        write_json_atomic(layout.fault_file(host), {})

    return prepare


def _prometheus_config(layout: Layout) -> dict:
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s", "external_labels": {"lab": "residency-scheduler"}},
        "rule_files": [str(RULES_DIR / "*.yml")],
        "scrape_configs": [{
            "job_name": "residency-scheduler-backend",
            "static_configs": [{"targets": [address], "labels": {"host": host, "service": "residency-scheduler-backend"}}
                               for host, address in layout.app_addresses().items()],
        }],
    }


def _prepare_prometheus(layout: Layout) -> Callable[[], None]:
    def prepare() -> None:
        directory = layout.root / "prometheus"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no YAML library needed
        write_json_atomic(directory / "prometheus.yml", _prometheus_config(layout))

    return prepare


def build_services(layout: Layout) -> list[ServiceSpec]:
    """Every service of the lab, in start order. Add a row here to grow the lab."""
    services = []
    for host, address in layout.app_addresses().items():
        host_dir = layout.host_dir(host)
        services.append(ServiceSpec(
            name=host, kind="scheduler", stage=1, address=address,
            argv=lambda: [str(venv_python()), "-m", "scheduler"],
            env={"SCHEDULER_BIND": "127.0.0.1", "SCHEDULER_PORT": address.rsplit(":", 1)[1], "SCHEDULER_HOST_ID": host,
                 "LOG_FILE": str(host_dir / "log" / "scheduler.log"), "LOG_FORMAT": os.environ.get("LAB_LOG_FORMAT", "json"),
                 "SCHEDULER_RELEASES_DIR": str(layout.releases_dir(host)), "SCHEDULER_FAULT_FILE": str(layout.fault_file(host)),
                 "PYTHONPATH": str(LAB_DIR)},
            log=host_dir / "run" / "scheduler.out", prepare=_prepare_app_host(layout, host), ready=_app_ready(address),
            describe="Residency Scheduler backend (stand-in)",
        ))
    prometheus_dir = layout.root / "prometheus"
    services.append(ServiceSpec(
        name="prometheus", kind="prometheus", stage=1, address=layout.prometheus_address,
        argv=lambda: [prometheus_binary(), f"--config.file={prometheus_dir / 'prometheus.yml'}",
                      f"--storage.tsdb.path={prometheus_dir / 'data'}", f"--web.listen-address={layout.prometheus_address}",
                      "--storage.tsdb.retention.time=1d", "--web.enable-lifecycle", "--log.level=warn"],
        log=prometheus_dir / "prometheus.out", prepare=_prepare_prometheus(layout), ready=_prometheus_ready(layout),
        describe="Prometheus (scrapes the apps every 5s, lab alert rules)",
    ))
    services.append(ServiceSpec(
        name="traffic", kind="traffic", stage=2, address="",
        argv=lambda: [str(venv_python()), str(LAB_DIR / "traffic.py"), "--rate", str(TRAFFIC_RATE),
                      "--targets", ",".join(f"http://{a}" for a in layout.app_addresses().values())],
        log=layout.root / "traffic" / "traffic.out",
        describe=f"traffic generator (~{TRAFFIC_RATE:g} req/s over the apps)",
    ))
    return services


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


@dataclass(frozen=True)
class FaultSpec:
    name: str
    service_kind: str  # whose fault file it goes to
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    settings: Callable[[argparse.Namespace], dict]


FAULTS = {
    spec.name: spec for spec in (
        FaultSpec("error_burst", "scheduler", "a share of API requests fail with 5xx and an ERROR log record (HighErrorRate)",
                  _add_error_burst_options, _error_burst_settings),
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


def _selected_hosts(layout: Layout, hosts: str | None) -> list[str]:
    known = list(HOST_NAMES)
    if not hosts:
        return known
    chosen = [h.strip() for h in hosts.split(",") if h.strip()]
    unknown = [h for h in chosen if h not in known]
    if unknown or not chosen:
        raise LabError(f"--hosts: unknown host {', '.join(unknown) or repr(hosts)} (hosts: {', '.join(known)})")
    for host in chosen:
        if not layout.host_dir(host).is_dir():
            raise LabError(f"host {host} has no state in {layout.root}: run `lab up` first")
    return chosen


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def _reset_state_dir(root: Path) -> None:
    if root.exists():
        if any(root.iterdir()) and not (root / MARKER).exists():
            raise LabError(f"{root} exists and is not a lab state directory (no {MARKER}): refusing to wipe it; set LAB_STATE_DIR elsewhere")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("state of lab/labctl.py; wiped by `lab up`\n", encoding="utf-8")


def _wait_ready(specs: list[ServiceSpec], started: dict[str, tuple[Running, subprocess.Popen]], deadline: float) -> list[str]:
    """Wait for ``specs`` to be ready; returns what is still missing at the deadline (empty when all are ready)."""
    pending = {spec.name: spec for spec in specs}
    missing: dict[str, str] = {}
    while pending:
        for name, spec in list(pending.items()):
            running, proc = started[name]
            if proc.poll() is not None:
                return [f"{name} exited with code {proc.returncode}; last lines of {running.log}:\n{_tail(Path(running.log))}"]
            problem = spec.ready()
            if problem is None:
                del pending[name]
            else:
                missing[name] = problem
        if not pending:
            return []
        if time.monotonic() > deadline:
            return [f"{name} not ready after {READY_TIMEOUT:.0f}s: {missing[name]}" for name in pending]
        time.sleep(0.2)
    return []


def _tail(path: Path, lines: int = 8) -> str:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        tail = []
    return "\n".join("    " + line for line in tail) or "    (no output)"


def cmd_up(layout: Layout, _args) -> int:
    began = time.monotonic()
    state = load_state(layout)
    alive = [r for r in recorded(state) if r.alive()]
    if alive:
        dead = [r.name for r in recorded(state) if not r.alive()]
        if dead:
            raise LabError(f"lab in {layout.root} is partly up ({', '.join(dead)} not running): run `lab down` then `lab up`")
        print(f"lab already up in {layout.root} ({', '.join(r.name for r in alive)}); see `lab status`")
        return 0
    services = build_services(layout)
    busy = [f"{s.name} ({s.address})" for s in services if s.address and port_in_use(s.address)]
    if busy:
        raise LabError(f"address already in use for {', '.join(busy)}: another lab or service is running (set LAB_PORT_OFFSET to move the lab)")
    _reset_state_dir(layout.root)
    state = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "state_dir": str(layout.root),
             "port_offset": layout.port_offset, "services": []}
    started: dict[str, tuple[Running, subprocess.Popen]] = {}
    try:
        for stage in sorted({s.stage for s in services}):
            specs = [s for s in services if s.stage == stage]
            for spec in specs:
                spec.prepare()
                running, proc = start_process(spec.name, spec.kind, spec.argv(), spec.env, spec.log, spec.address)
                started[spec.name] = (running, proc)
                state["services"].append(asdict(running))
                save_state(layout, state)  # recorded at once, so `lab down` can stop a half-started lab
            missing = _wait_ready(specs, started, time.monotonic() + READY_TIMEOUT)
            if missing:
                raise LabError("lab did not come up:\n  " + "\n  ".join(missing))
    except BaseException:
        for running, proc in reversed(list(started.values())):
            outcome = stop_process(running)
            proc.poll()  # reap our own child
            print(f"stopped {running.name} (pid {running.pid}): {outcome}", file=sys.stderr)
        (layout.root / STATE_FILE).unlink(missing_ok=True)
        raise
    elapsed = time.monotonic() - began
    _print_table([[s.name, str(started[s.name][0].pid), s.address or "-", s.describe] for s in services], ["SERVICE", "PID", "ADDRESS", "WHAT"])
    print(f"lab up in {elapsed:.1f}s; state in {layout.root}; app logs in hosts/*/log/scheduler.log; "
          f"Prometheus http://{layout.prometheus_address}")
    return 0


def cmd_down(layout: Layout, _args) -> int:
    state = load_state(layout)
    services = recorded(state)
    if not any(r.alive() for r in services):
        (layout.root / STATE_FILE).unlink(missing_ok=True)
        print(f"lab is not running ({layout.root})")
        return 0
    failed = []
    for running in reversed(services):
        outcome = stop_process(running)
        print(f"{running.name:<12} pid {running.pid:<8} {outcome}")
        if outcome == "still running":
            failed.append(running.name)
    if failed:
        raise LabError(f"could not stop {', '.join(failed)}")
    (layout.root / STATE_FILE).unlink(missing_ok=True)
    print("lab down")
    return 0


def _service_status(layout: Layout, running: Running) -> dict:
    info = {"name": running.name, "kind": running.kind, "pid": running.pid, "address": running.address, "running": running.alive()}
    if running.kind == "scheduler":
        health = try_json(f"http://{running.address}/health") if info["running"] else None
        info["healthy"] = bool(health and health.get("status") == "healthy")
        info["release"] = health.get("version") if health else current_version(layout.releases_dir(running.name))
        info["faults"] = read_faults(layout, running.name)
    elif running.kind == "prometheus":
        info["healthy"] = info["running"] and _prometheus_ready(layout)() is None
        alerts = try_json(f"http://{running.address}/api/v1/alerts") if info["running"] else None
        info["alerts"] = [{"alertname": a["labels"].get("alertname"), "state": a.get("state"), "instance": a["labels"].get("instance")}
                          for a in (alerts or {}).get("data", {}).get("alerts", [])]
    else:
        info["healthy"] = info["running"]
    return info


def cmd_status(layout: Layout, args) -> int:
    state = load_state(layout)
    services = [_service_status(layout, r) for r in recorded(state)]
    up = bool(services) and any(s["running"] for s in services)
    if args.json:
        print(json.dumps({"state_dir": str(layout.root), "up": up, "started_at": (state or {}).get("started_at"), "services": services}, indent=2))
    elif not services:
        print(f"lab is not running ({layout.root})")
    else:
        rows = []
        for s in services:
            details = []
            if "release" in s:
                details.append(f"release {s['release']}")
                details.extend(f"fault {name} {json.dumps(spec, separators=(',', ':'))}" for name, spec in s["faults"].items())
            if s.get("alerts"):
                details.append("alerts: " + ", ".join(f"{a['alertname']}[{a['state']}] {a['instance']}" for a in s["alerts"]))
            rows.append([s["name"], str(s["pid"]), s["address"] or "-", "running" if s["running"] else "stopped",
                         "healthy" if s["healthy"] else "UNHEALTHY", "; ".join(details)])
        _print_table(rows, ["SERVICE", "PID", "ADDRESS", "STATE", "HEALTH", "DETAILS"])
    if not up:
        return 3
    return 0 if all(s["running"] and s["healthy"] for s in services) else 1


def _wait_for_health(layout: Layout, hosts: list[str], accept: Callable[[dict], bool], what: str, timeout: float = 5.0) -> None:
    """Tell whether running apps picked up a change (they re-read faults and releases by themselves)."""
    addresses = layout.app_addresses()
    pending = [h for h in hosts if try_json(f"http://{addresses[h]}/health") is not None]
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
    hosts = _selected_hosts(layout, args.hosts)
    settings = spec.settings(args) if args.action == "on" else None
    for host in hosts:
        faults = read_faults(layout, host)
        if settings is None:
            faults.pop(spec.name, None)
        else:
            faults[spec.name] = settings
        write_json_atomic(layout.fault_file(host), faults)
    _wait_for_health(layout, hosts, lambda h: (spec.name in h.get("faults", {})) == (settings is not None),
                     f"fault {spec.name} {args.action}")
    detail = f": {json.dumps(settings, separators=(',', ':'))}" if settings else ""
    print(f"fault {spec.name} {args.action} for {', '.join(hosts)}{detail}")
    return 0


def cmd_deploy(layout: Layout, args) -> int:
    if not VERSION_PATTERN.match(args.version) or args.version == "current":
        raise LabError(f"VERSION must look like v1.5.0 (letters, digits, . _ + -), not {args.version!r}")
    hosts = _selected_hosts(layout, args.hosts)
    exists = [h for h in hosts if (layout.releases_dir(h) / args.version).exists()]
    if exists:
        raise LabError(f"release {args.version} already exists on {', '.join(exists)}: pick a new version")
    defect = {"rate": args.defect_rate, "kind": args.defect, "endpoints": args.defect_endpoints} if args.defect else None
    now = datetime.now(timezone.utc).astimezone()
    for host in hosts:
        write_release(layout.releases_dir(host), args.version, now, defect)
        switch_current(layout.releases_dir(host), args.version)
    _wait_for_health(layout, hosts, lambda h: h.get("version") == args.version, f"release {args.version}")
    print(f"deployed {args.version} on {', '.join(hosts)}" + (f" with defect {json.dumps(defect, separators=(',', ':'))}" if defect else ""))
    return 0


def cmd_rollback(layout: Layout, args) -> int:
    hosts = _selected_hosts(layout, args.hosts)
    for host in hosts:
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
    commands.add_parser("up", help="start the lab (fresh state)").set_defaults(run=cmd_up)
    commands.add_parser("down", help="stop everything the lab started").set_defaults(run=cmd_down)
    status = commands.add_parser("status", help="services, health, releases, faults (exit 0 healthy, 1 unhealthy, 3 not running)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    fault = commands.add_parser("fault", help="switch faults on and off")
    fault.set_defaults(run=cmd_fault, fault_name=None)
    fault_names = fault.add_subparsers(dest="fault_name", metavar="FAULT")
    fault_names.add_parser("list", help="active faults per host")
    for spec in FAULTS.values():
        one = fault_names.add_parser(spec.name, help=spec.help)
        one.add_argument("action", choices=("on", "off"))
        one.add_argument("--hosts", help="comma-separated hosts (default all)")
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

    alerts = commands.add_parser("alerts", help="Prometheus's active alerts")
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(run=cmd_alerts)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(Layout.from_env(), args)
    except LabError as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
