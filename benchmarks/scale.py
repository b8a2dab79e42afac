# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scale benchmark: the HighErrorRate triage (investigate only) on 4, 20 and 50 hosts, against Ansible's floor.

Usage: .venv/bin/python benchmarks/scale.py [--hosts 4,20,50] [--repeat 3] [--variants] [--profile]

What is measured is the collection's overhead per run and per host, so the hosts are cheap: N inventory hosts
(s001..sNNN) spread round-robin over the lab's seven real systemd hosts, each alias with its own SSH connection
(its own ControlPath), its own log file and its own releases directory (written once, before the timings). The
metrics step queries the lab's real Prometheus. Every run starts cold: a new ControlPath directory, a new incident
directory (so every run opens, pages and documents a new incident, like the first run for an alert).

The lab: the one named by LAB_STATE_DIR / LAB_PORT_OFFSET when it is up; else the script starts one
(--state-dir, --port-offset) and takes it down at the end.

The baseline ("floor") is a playbook of the triage's shape with no collection code: one play on localhost and one
over the N hosts with two ansible.builtin.ping tasks each (the triage's two per-host module calls), same
connection settings. The targets of issue 11: the whole triage on 4 hosts in <= 8 s, each further host <= 0.45 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB_HOSTS = {"app1": 2201, "app2": 2202, "worker1": 2203, "db1": 2204, "cache1": 2205, "ml1": 2206, "mon1": 2207}
REMOTE_ROOT = "/tmp/sre-runbooks-scale"
TARGET_FOUR_HOSTS_S = 8.0
TARGET_PER_HOST_S = 0.45
# --keep: leave each run's directory (inventory, incident record) for a look afterwards.
KEEP = False

FLOOR_PLAYBOOK = """---
- name: Floor | localhost
  hosts: localhost
  gather_facts: false
  tasks:
    - name: One task on the controller
      ansible.builtin.ping:

- name: Floor | every host
  hosts: app
  gather_facts: false
  tasks:
    - name: First host-task
      ansible.builtin.ping:

    - name: Second host-task
      ansible.builtin.ping:
"""

PREPARE_PLAYBOOK = """---
- name: Scale benchmark | give every alias its own log and releases
  hosts: app
  gather_facts: false
  tasks:
    - name: The alias's directories
      ansible.builtin.file:
        path: "{{ item }}"
        state: directory
        mode: "0755"
      loop:
        - "{{ scheduler_releases_dir }}/v1.4.1"
        - "{{ scheduler_releases_dir }}/v1.4.2"

    - name: The alias's releases and log
      ansible.builtin.copy:
        src: "{{ bench_files }}/{{ item.src }}"
        dest: "{{ item.dest }}"
        mode: "0644"
      loop:
        - {src: scheduler.log, dest: "{{ scheduler_log_file }}"}
        - {src: v1.4.1.json, dest: "{{ scheduler_releases_dir }}/v1.4.1/release.json"}
        - {src: v1.4.2.json, dest: "{{ scheduler_releases_dir }}/v1.4.2/release.json"}

    - name: The current release
      ansible.builtin.file:
        src: v1.4.2
        dest: "{{ scheduler_releases_dir }}/current"
        state: link
        force: true
"""


def log_lines(now: datetime, count: int = 400) -> str:
    """A small Residency Scheduler log: the last hour, one record in ten an OperationalError."""
    lines = []
    for i in range(count):
        ts = now - timedelta(seconds=3600 * (count - i) / count)
        rec = {"timestamp": ts.isoformat(timespec="microseconds"), "level": "INFO", "logger": "scheduler.app",
               "message": f"GET /api/v1/schedules 200 {10 + i % 40}.0ms", "module": "app", "function": "observe", "line": 347,
               "exception": None, "process": 33, "thread": "MainThread", "endpoint": "/api/v1/schedules", "status": 200}
        if i % 10 == 0:
            value = 'connection to server at "db" (127.0.0.1), port 15432 failed: timeout expired'
            rec.update(level="ERROR", logger="app.db.session", message=f"Database query failed: {value}", status=500,
                       exception={"type": "OperationalError", "value": value, "traceback": f"Traceback\nOperationalError: {value}\n"})
        lines.append(json.dumps(rec))
    return "\n".join(lines) + "\n"


class Lab:
    """The lab the benchmark runs on: the caller's, or one it starts and stops."""

    def __init__(self, state_dir: Path, offset: int):
        self.state_dir = state_dir
        self.offset = offset
        self.started = False

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{19090 + self.offset}"

    def is_up(self) -> bool:
        if not (self.state_dir / "ssh" / "id_ed25519").is_file():
            return False
        try:
            with urllib.request.urlopen(self.prometheus_url + "/-/ready", timeout=3) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _env(self) -> dict[str, str]:
        return {**os.environ, "LAB_STATE_DIR": str(self.state_dir), "LAB_PORT_OFFSET": str(self.offset)}

    def up(self) -> None:
        print(f"starting a lab in {self.state_dir} at port offset {self.offset} ...", flush=True)
        subprocess.run([str(REPO / "lab" / "lab"), "up"], env=self._env(), check=True, stdout=subprocess.DEVNULL)
        self.started = True

    def down(self) -> None:
        if self.started:
            subprocess.run([str(REPO / "lab" / "lab"), "down"], env=self._env(), check=False, stdout=subprocess.DEVNULL)


def inventory(lab: Lab, count: int, pipelining: bool, cp_dir: Path) -> dict:
    """N aliases over the lab's hosts, each its own connection, log and releases."""
    names = list(LAB_HOSTS)
    ssh = lab.state_dir / "ssh"
    hosts = {}
    for i in range(count):
        alias = f"s{i + 1:03d}"
        base = names[i % len(names)]
        hosts[alias] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": LAB_HOSTS[base] + lab.offset,
            # One ControlPath per alias: aliases of one lab host would otherwise share one SSH master.
            "ansible_control_path_dir": str(cp_dir / alias),
            "scheduler_log_file": f"{REMOTE_ROOT}/{alias}/scheduler.log",
            "scheduler_releases_dir": f"{REMOTE_ROOT}/{alias}/releases",
            "bench_lab_host": base,
        }
    common = {
        "ansible_connection": "ansible.builtin.ssh",
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(ssh / "id_ed25519"),
        "ansible_ssh_common_args": f"-F none -o UserKnownHostsFile={ssh / 'known_hosts'} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        "ansible_ssh_pipelining": pipelining,
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    return {
        "all": {
            "vars": {"prometheus_url": lab.prometheus_url, "app_triage_rate_window": "1m",
                     "app_triage_selector": ',job="residency-scheduler-backend"'},
            "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
            "children": {"app": {"hosts": hosts, "vars": common}},
        }
    }


def close_masters(cp_dir: Path) -> None:
    """End the SSH masters a run left (ControlPersist), so the next run starts cold and none pile up."""
    for sock in cp_dir.glob("*/*"):
        if sock.is_socket():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"], capture_output=True, check=False)


def run(lab: Lab, work: Path, playbook: Path, count: int, *, forks: int = 20, pipelining: bool = True,
        strategy: str = "linear", profile: bool = False) -> tuple[float, float, str]:
    """One cold run; returns (wall seconds, the controller's CPU seconds, output)."""
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix="run-"))
    cp_dir = run_dir / "cp"
    (run_dir / "inventory.json").write_text(json.dumps(inventory(lab, count, pipelining, cp_dir)))
    (run_dir / "extra.json").write_text(json.dumps({"runbook_incident_dir": str(run_dir / "incidents"), "runbook_remediate": False}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORKS": str(forks),
           "ANSIBLE_STRATEGY": strategy, "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"), "ANSIBLE_RETRY_FILES_ENABLED": "0"}
    if profile:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "sre.runbooks.incident_timeline,ansible.posix.profile_tasks"
        env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "all"
    argv = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(run_dir / "inventory.json"),
            "-e", f"@{run_dir / 'extra.json'}", str(playbook)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    close_masters(cp_dir)
    if proc.returncode != 0:
        sys.exit(f"{playbook.name} on {count} hosts failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    if "unreachable=1" in proc.stdout or "failed=1" in proc.stdout:
        sys.exit(f"{playbook.name} on {count} hosts: a host was unreachable or failed:\n{proc.stdout[-4000:]}")
    if playbook.name == "high_error_rate.yml":
        records = list((run_dir / "incidents").glob("*/incident.json"))
        data = json.loads(records[0].read_text()) if records else {}
        checked = data.get("summary", "")
        if f"across {count} of {count} app hosts" not in checked:
            sys.exit(f"the triage on {count} hosts did not check every host: {checked!r}")
    if not KEEP:
        shutil.rmtree(run_dir, ignore_errors=True)
    return wall, cpu, proc.stdout


def timed(label: str, repeat: int, fn) -> tuple[float, float]:
    """Median wall seconds and median controller CPU seconds of ``repeat`` runs."""
    walls, cpus = [], []
    for _attempt in range(repeat):
        wall, cpu, _out = fn()
        walls.append(wall)
        cpus.append(cpu)
    median, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"  {label:<44} median {median:6.2f} s (best {min(walls):6.2f})   controller CPU {cpu:6.2f} s   "
          f"[{', '.join(f'{w:.2f}' for w in walls)}]  load {os.getloadavg()[0]:.1f}", flush=True)
    return median, cpu


def slope(points: dict[int, float]) -> tuple[float, float]:
    """Least-squares fit wall = a + b * hosts; returns (a, b)."""
    xs, ys = list(points), list(points.values())
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def prepare(lab: Lab, work: Path, count: int) -> None:
    files = work / "files"
    files.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    (files / "scheduler.log").write_text(log_lines(now))
    (files / "v1.4.1.json").write_text(json.dumps({"version": "v1.4.1", "deployed_at": (now - timedelta(days=2)).isoformat(timespec="seconds")}))
    (files / "v1.4.2.json").write_text(json.dumps({"version": "v1.4.2", "deployed_at": (now - timedelta(minutes=50)).isoformat(timespec="seconds")}))
    playbook = work / "prepare.yml"
    playbook.write_text(PREPARE_PLAYBOOK)
    inv = inventory(lab, count, True, work / "cp-prepare")
    (work / "prepare-inventory.json").write_text(json.dumps(inv))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(work / "prepare-inventory.json"),
                           "-e", f"bench_files={files}", str(playbook)], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    close_masters(work / "cp-prepare")
    if proc.returncode != 0:
        sys.exit(f"preparing the hosts failed:\n{proc.stdout[:6000]}\n{proc.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="4,20,50", help="host counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median reported)")
    parser.add_argument("--variant-hosts", type=int, default=20, help="host count for the forks / pipelining / strategy variants")
    parser.add_argument("--no-variants", action="store_true", help="only the default settings and the floor")
    parser.add_argument("--profile", action="store_true", help="also print ansible.posix.profile_tasks for one run on the largest count")
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("LAB_STATE_DIR") or REPO / ".cache" / "bench" / "lab"))
    parser.add_argument("--port-offset", type=int, default=int(os.environ.get("LAB_PORT_OFFSET") or 600))
    parser.add_argument("--keep", action="store_true", help="keep every run's directory (inventory, incident record) and print where")
    args = parser.parse_args()
    global KEEP  # pylint: disable=global-statement
    KEEP = args.keep
    counts = sorted(int(c) for c in args.hosts.split(","))

    lab = Lab(args.state_dir.resolve(), args.port_offset)
    if not lab.is_up():
        lab.up()
    work = Path(tempfile.mkdtemp(prefix="sre-runbooks-scale-"))
    try:
        prepare(lab, work, max(counts + [args.variant_hosts]))
        floor_playbook = work / "floor.yml"
        floor_playbook.write_text(FLOOR_PLAYBOOK)
        triage = REPO / "playbooks" / "high_error_rate.yml"
        load = os.getloadavg()
        print(f"HighErrorRate triage (investigate only), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
              f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f}; defaults: forks 20, pipelining on, linear")
        triage_r, floor_r = {}, {}
        for count in counts:
            print(f"{count} hosts:")
            triage_r[count] = timed("triage", args.repeat, lambda c=count: run(lab, work, triage, c))
            floor_r[count] = timed("floor (no-op playbook, same host-tasks)", args.repeat, lambda c=count: run(lab, work, floor_playbook, c))
        print()
        print(f"{'hosts':>5} {'triage s':>9} {'floor s':>8} {'triage/floor':>12} {'triage CPU s':>12} {'floor CPU s':>11} {'CPU ratio':>9}")
        for count in counts:
            (tw, tc), (fw, fc) = triage_r[count], floor_r[count]
            print(f"{count:>5} {tw:>9.2f} {fw:>8.2f} {tw / fw:>12.2f} {tc:>12.2f} {fc:>11.2f} {tc / fc:>9.2f}")
        if len(counts) > 1:
            for what, index in (("wall", 0), ("controller CPU", 1)):
                a, b = slope({c: r[index] for c, r in triage_r.items()})
                fa, fb = slope({c: r[index] for c, r in floor_r.items()})
                print(f"{what} per host (least squares): triage {b:.3f} s, floor {fb:.3f} s, ratio {b / fb:.2f}; "
                      f"fixed: triage {a:.2f} s, floor {fa:.2f} s")
            _a, b = slope({c: r[0] for c, r in triage_r.items()})
            first = triage_r[counts[0]][0]
            print(f"targets: {counts[0]} hosts {first:.2f} s vs {TARGET_FOUR_HOSTS_S} s ({first / TARGET_FOUR_HOSTS_S:.2f} of the target); "
                  f"per host {b:.3f} s vs {TARGET_PER_HOST_S} s ({b / TARGET_PER_HOST_S:.2f} of the target)")
        if not args.no_variants:
            n = args.variant_hosts
            print(f"\nvariants on {n} hosts (median of {args.repeat}):")
            base = triage_r.get(n) or timed("defaults (forks 20, pipelining, linear)", args.repeat, lambda: run(lab, work, triage, n))
            rows = [("forks 5", {"forks": 5}), ("forks 50", {"forks": 50}), ("pipelining off", {"pipelining": False}),
                    ("strategy free", {"strategy": "free"})]
            for label, kwargs in rows:
                wall, cpu = timed(label, args.repeat, lambda kw=kwargs: run(lab, work, triage, n, **kw))
                print(f"  {'':<44} vs defaults ({base[0]:.2f} s, CPU {base[1]:.2f} s): wall {wall / base[0]:.2f}x, CPU {cpu / base[1]:.2f}x")
        if args.profile:
            n = counts[-1]
            _wall, _cpu, out = run(lab, work, triage, n, profile=True)
            print(f"\nprofile_tasks, one run on {n} hosts:")
            print(out[out.rfind("PLAY RECAP"):])
    finally:
        if KEEP:
            print(f"runs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
