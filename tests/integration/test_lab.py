"""The local lab end to end: `lab up` boots the fleet of systemd hosts, the services are real
units reached over SSH, PostgreSQL holds the seeded schedule, Redis caches it, metrics, an
error burst seen in logs, Prometheus, alerts and Alertmanager, a defective release rolled
back, and `lab down` leaving nothing running or mounted.

The lab runs in a temporary state directory on ports moved by LAB_PORT_OFFSET, so a
lab a developer has up is not touched. Needs root and the cached base rootfs
(`make lab-base`; built on first use otherwise, about 90 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "lab" / "lab"
VENV_BIN = REPO / ".venv" / "bin"
# every port the fleet listens on, before the offset: sshd of the 7 hosts, then the services
SSH_PORTS = {"app1": 2201, "app2": 2202, "worker1": 2203, "db1": 2204, "cache1": 2205, "ml1": 2206, "mon1": 2207}
BASE_PORTS = (*SSH_PORTS.values(), 18001, 18002, 18003, 15432, 16379, 18101, 18102, 19090, 19093, 19094)
LAB_USER = {"username": "avery.mensah@residency.lab", "password": "lab-password"}
HTTP = requests.Session()
HTTP.trust_env = False  # the lab is on loopback: never through a proxy from the environment


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_offset() -> int:
    for offset in range(200, 1001, 37):
        if all(_free(port + offset) for port in BASE_PORTS):
            return offset
    raise RuntimeError("no free ports for a test lab")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_for(check, timeout: float, interval: float = 1.0, what: str = "condition"):
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not seen within {timeout:.0f}s (last value: {value!r})")
        time.sleep(interval)


class Lab:
    def __init__(self, state_dir: Path, offset: int):
        self.state_dir = state_dir
        self.env = {**os.environ, "LAB_STATE_DIR": str(state_dir), "LAB_PORT_OFFSET": str(offset)}
        self.offset = offset
        self.apps = {"app1": f"http://127.0.0.1:{18001 + offset}", "app2": f"http://127.0.0.1:{18002 + offset}"}
        self.prometheus = f"http://127.0.0.1:{19090 + offset}"
        self.alertmanager = f"http://127.0.0.1:{19093 + offset}"
        self.webhook = f"http://127.0.0.1:{19094 + offset}"
        self.ml_api = f"http://127.0.0.1:{18101 + offset}"
        self.up_output = ""
        self.up_seconds = 0.0

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(LAB), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def log_records(self, host: str) -> list[dict]:
        path = self.state_dir / "hosts" / host / "log" / "scheduler.log"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def token(self, host: str) -> str:
        response = HTTP.post(f"{self.apps[host]}/api/v1/auth/login", json=LAB_USER, timeout=5)
        response.raise_for_status()
        return response.json()["access_token"]

    def get(self, host: str, path: str, token: str) -> requests.Response:
        return HTTP.get(f"{self.apps[host]}{path}", headers={"authorization": f"Bearer {token}"}, timeout=5)

    def query(self, promql: str) -> list[dict]:
        response = HTTP.get(f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def alerts(self, name: str) -> list[dict]:
        response = HTTP.get(f"{self.prometheus}/api/v1/alerts", timeout=5)
        response.raise_for_status()
        return [a for a in response.json()["data"]["alerts"] if a["labels"]["alertname"] == name]

    def ssh(self, host: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """The real ssh client with the lab's ssh config (key, port, known_hosts): what an operator does."""
        result = subprocess.run(["ssh", "-F", str(self.state_dir / "ssh" / "config"), "-o", "BatchMode=yes", host, command],
                                capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert result.returncode == 0, f"{host}: {command!r} -> {result.returncode}: {result.stdout}{result.stderr}"
        return result

    def state(self) -> dict:
        return json.loads((self.state_dir / "lab.json").read_text(encoding="utf-8"))

    def recorded_pids(self) -> list[int]:
        """What `lab up` printed: each host's systemd-nspawn and the traffic generator."""
        state = self.state()
        return [pids[1] for pids in state["host_pids"].values()] + [service["pid"] for service in state["services"]]

    def all_pids(self) -> list[int]:
        state = self.state()
        return [pid for pids in state["host_pids"].values() for pid in pids] + [service["pid"] for service in state["services"]]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = Lab(tmp_path_factory.mktemp("lab-state"), _pick_offset())
    started = time.monotonic()
    result = the_lab.run("up")
    the_lab.up_seconds = time.monotonic() - started
    the_lab.up_output = result.stdout
    pids = the_lab.all_pids() if (the_lab.state_dir / "lab.json").exists() else []
    try:
        assert result.returncode == 0, f"lab up failed:\n{result.stdout}\n{result.stderr}"
        yield the_lab
    finally:
        down = the_lab.run("down")
        assert down.returncode == 0, down.stderr
        assert not [pid for pid in pids if _alive(pid)], "lab down left processes running"


def test_up_says_what_it_started_and_is_idempotent(lab):
    for name in (*SSH_PORTS, "residency-scheduler-backend", "postgresql@15-main", "redis-server", "heart-disease-api",
                 "heart-disease-worker", "prometheus", "prometheus-alertmanager", "residency-scheduler-celery-worker", "traffic"):
        assert name in lab.up_output
    for address in [*lab.apps.values(), lab.prometheus, lab.alertmanager, lab.ml_api]:
        assert address.removeprefix("http://") in lab.up_output
    for host, port in SSH_PORTS.items():
        assert f"127.0.0.1:{port + lab.offset}" in lab.up_output, host
    for pid in lab.recorded_pids():
        assert str(pid) in lab.up_output
        assert _alive(pid)
    seconds = float(re.search(r"lab up in ([0-9.]+)s", lab.up_output).group(1))
    assert seconds < 60, lab.up_output  # a fresh lab on a cached base: ~15 s here
    print(f"lab up took {lab.up_seconds:.1f}s (reported {seconds:.1f}s)")

    pids = lab.recorded_pids()
    again = lab.run("up")
    assert again.returncode == 0
    assert "already up" in again.stdout
    assert lab.recorded_pids() == pids  # nothing restarted


def test_apps_healthy_on_the_seeded_release(lab):
    for host, url in lab.apps.items():
        health = HTTP.get(f"{url}/health", timeout=5).json()
        assert health["status"] == "healthy"
        assert health["host"] == host
        assert health["version"] == "v1.4.1"
        assert health["database"] == "ok"
        # the real system's path inside the host, over SSH; the lab sees the same files through a bind
        assert lab.ssh(host, "readlink /srv/residency-scheduler/releases/current").stdout.strip() == "v1.4.1"
        releases = lab.state_dir / "hosts" / host / "srv" / "releases"
        assert os.readlink(releases / "current") == "v1.4.1"
        manifests = {v: json.loads((releases / v / "release.json").read_text()) for v in ("v1.4.0", "v1.4.1")}
        assert manifests["v1.4.0"]["deployed_at"] < manifests["v1.4.1"]["deployed_at"]
        assert all(m["commit"] and "defect" not in m for m in manifests.values())

    status = lab.run("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert {h["name"]: (h["state"], h["healthy"]) for h in report["hosts"]} == {name: ("running", True) for name in SSH_PORTS}
    services = {s["name"]: s for s in report["services"]}
    assert set(services) == {
        "app1/residency-scheduler-backend", "app2/residency-scheduler-backend", "worker1/residency-scheduler-celery-worker",
        "db1/postgresql@15-main", "cache1/redis-server", "ml1/heart-disease-api", "ml1/heart-disease-worker",
        "mon1/prometheus", "mon1/prometheus-alertmanager", "mon1/lab-alert-webhook", "traffic"}
    assert all(s["running"] and s["healthy"] for s in services.values()), services
    assert all(s["active"] == "active" for name, s in services.items() if name != "traffic")
    assert services["app1/residency-scheduler-backend"]["release"] == "v1.4.1"
    assert services["app1/residency-scheduler-backend"]["faults"] == {}
    text = lab.run("status")
    assert text.returncode == 0 and "UNHEALTHY" not in text.stdout


def test_services_are_systemd_units_in_their_hosts(lab):
    """`systemctl status` means what the runbook says: the service is a unit in its own host."""
    units = {"app1": "residency-scheduler-backend", "app2": "residency-scheduler-backend", "worker1": "residency-scheduler-celery-worker",
             "db1": "postgresql@15-main", "cache1": "redis-server", "ml1": "heart-disease-api", "mon1": "prometheus"}
    for host, unit in units.items():
        assert lab.ssh(host, "hostname").stdout.strip() == host
        assert lab.ssh(host, f"systemctl is-active {unit}").stdout.strip() == "active"
        assert lab.ssh(host, "cat /proc/1/comm").stdout.strip() == "systemd"
    # the unit's main process is the app, started by the venv python bound read-only, and its log is the real path
    main_pid = lab.ssh("app1", "systemctl show -p MainPID --value residency-scheduler-backend").stdout.strip()
    assert "-m scheduler" in lab.ssh("app1", f"tr '\\0' ' ' < /proc/{main_pid}/cmdline").stdout
    assert lab.ssh("app1", f"test -s /var/log/app/scheduler.log && findmnt -no OPTIONS -T {REPO}/.venv | cut -d, -f1").stdout.strip() == "ro"
    assert "Started residency-scheduler-backend.service" in lab.ssh("app1", "journalctl -u residency-scheduler-backend --no-pager").stdout
    # the ML units as docs/lab-heart-disease.md asks: no automatic restart, reload is SIGHUP
    assert lab.ssh("ml1", "systemctl show -p Restart --value heart-disease-api").stdout.strip() == "no"
    assert "kill -HUP" in lab.ssh("ml1", "systemctl cat heart-disease-api").stdout
    assert HTTP.get(f"{lab.ml_api}/health", timeout=5).status_code == 200
    # every scrape target up: both backends, the Celery worker, the ML API and worker, Prometheus and Alertmanager themselves
    targets = HTTP.get(f"{lab.prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert {(t["labels"]["job"], t["labels"]["host"]): t["health"] for t in targets} == {
        ("residency-scheduler-backend", "app1"): "up", ("residency-scheduler-backend", "app2"): "up",
        ("residency-scheduler-celery-worker", "worker1"): "up",
        ("heart-disease-api", "ml1"): "up", ("heart-disease-worker", "ml1"): "up",
        ("prometheus", "mon1"): "up", ("alertmanager", "mon1"): "up"}


def test_inventory_reaches_every_host_over_ssh(lab):
    """inventories/lab describes this fleet: Ansible connects to each host over real SSH."""
    env = {**lab.env, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    listed = json.loads(subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(REPO / "inventories" / "lab"), "--list"],
                                       env=env, capture_output=True, text=True, check=True, timeout=60).stdout)
    groups = {group: set(listed[group]["hosts"]) for group in ("app", "worker", "db", "cache", "ml_api", "ml_worker", "monitoring")}
    assert groups == {"app": {"app1", "app2"}, "worker": {"worker1"}, "db": {"db1"}, "cache": {"cache1"}, "ml_api": {"ml1"},
                      "ml_worker": {"ml1"}, "monitoring": {"mon1"}}
    app1 = listed["_meta"]["hostvars"]["app1"]
    assert app1["scheduler_log_file"] == "/var/log/app/scheduler.log"
    assert app1["scheduler_releases_dir"] == "/srv/residency-scheduler/releases"
    ping = subprocess.run([str(VENV_BIN / "ansible"), "lab", "-i", str(REPO / "inventories" / "lab"), "-m", "ansible.builtin.command",
                           "-a", "hostname", "-o"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    for host in SSH_PORTS:
        assert re.search(rf"^{host} \| CHANGED \| rc=0 \| \(stdout\) {host}$", ping.stdout, re.M), ping.stdout


def test_database_holds_the_seeded_schedule(lab):
    secrets = lab.state_dir / "secrets.json"
    assert secrets.stat().st_mode & 0o777 == 0o600
    password = json.loads(secrets.read_text())["db_password"]
    assert password not in lab.up_output and password not in lab.run("status", "--json").stdout

    def psql(sql: str) -> str:
        return lab.ssh("db1", f"runuser -u postgres -- psql -d residency_scheduler -AtX -c \"{sql}\"").stdout.strip()

    assert psql("SHOW port") == str(15432 + lab.offset)
    assert "pg_stat_statements" in psql("SHOW shared_preload_libraries")
    assert psql("SELECT count(*) FILTER (WHERE type = 'resident') || '/' || count(*) FILTER (WHERE type = 'faculty') FROM people") == "20/8"
    assert psql("SELECT string_agg(DISTINCT pgy_level::text, ',' ORDER BY pgy_level::text) FROM people") == "1,2,3"
    assert psql("SELECT count(DISTINCT date) FROM blocks") == "56"
    # every block a PGY-1 works has a supervising faculty assignment
    assert psql("SELECT count(DISTINCT a.block_id) FROM assignments a JOIN people p ON p.id = a.person_id AND p.pgy_level = 1 "
                "WHERE NOT EXISTS (SELECT 1 FROM assignments s JOIN people f ON f.id = s.person_id AND f.type = 'faculty' "
                "WHERE s.block_id = a.block_id AND s.role = 'supervising')") == "0"
    assert psql("SELECT rolname FROM pg_roles WHERE rolname = 'scheduler'") == "scheduler"
    # the apps read it through their pool: queries show up in pg_stat_statements under the scheduler role
    wait_for(lambda: int(psql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
                              "WHERE r.rolname = 'scheduler' AND query LIKE '%FROM assignments%'")) > 0, 20, what="app queries in pg_stat_statements")


def test_pool_and_cache_metrics_are_real(lab):
    def families():
        text = HTTP.get(f"{lab.apps['app1']}/metrics", timeout=5).text
        return {f.name: f for f in text_string_to_metric_families(text)}

    metrics = families()
    assert metrics["db_connections_max"].samples[0].value == 10  # pool 5 + overflow 5
    assert 0 <= metrics["db_connections_active"].samples[0].value <= 10
    assert wait_for(lambda: families()["cache_hits"].samples[0].value > 0, 30, what="cache hits") > 0

    # the apps share the Redis cache: a window one app cached is a hit for the other, so count misses over both
    def misses():
        return sum(f.samples[0].value for app in lab.apps.values()
                   for f in text_string_to_metric_families(HTTP.get(f"{app}/metrics", timeout=5).text) if f.name == "cache_misses")
    assert wait_for(lambda: misses() >= 1, 40, what="a cache miss on either app") >= 1
    assert lab.ssh("cache1", f"redis-cli -p {16379 + lab.offset} config get maxmemory").stdout.split()[1] == str(64 * 1024 * 1024)
    keys = lab.ssh("cache1", f"redis-cli -p {16379 + lab.offset} --scan --pattern 'residency-scheduler:blocks:*'").stdout.split()
    assert keys
    # Every entry expires within 30 s (PTTL -1 would be "never"; -2 or 0 is a key expiring as we look).
    pttl_of_each = "\"local t = {} for i, k in ipairs(KEYS) do t[i] = redis.call('PTTL', k) end return t\""
    command = f"redis-cli -p {16379 + lab.offset} eval {pttl_of_each} {len(keys[:20])} {' '.join(keys[:20])}"
    ttls = [int(v) for v in lab.ssh("cache1", command).stdout.split()]
    assert ttls and all(t != -1 and t <= 30_000 for t in ttls), ttls


def test_metrics_use_the_real_names_and_traffic_flows(lab):
    def traffic_counted():
        text = HTTP.get(f"{lab.apps['app2']}/metrics", timeout=5).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        requests_total = [s for s in families["http_requests"].samples if s.name == "http_requests_total"]
        return families if any(s.labels["handler"].startswith("/api/v1/") for s in requests_total) else None

    families = wait_for(traffic_counted, 20, what="API traffic in http_requests_total")
    requests_total = [s for s in families["http_requests"].samples if s.name == "http_requests_total"]
    assert {tuple(sorted(s.labels)) for s in requests_total} == {("handler", "method", "status")}
    assert {s.labels["status"] for s in requests_total} >= {"200"}  # exact codes, not "2xx"
    assert not [s for s in requests_total if s.labels["handler"] == "/metrics"]
    buckets = [s for s in families["http_request_duration_seconds"].samples if s.name == "http_request_duration_seconds_bucket"]
    assert buckets and {"handler", "method", "le"} == set(buckets[0].labels)
    assert families["process_cpu_seconds"].samples[0].value > 0
    assert [(s.labels, s.value) for s in families["app_info"].samples] == [({"version": "v1.4.1"}, 1.0)]


def test_error_burst_raises_high_error_rate_and_clears(lab):
    before = len(lab.log_records("app1"))
    on = lab.run("fault", "error_burst", "on", "--rate", "0.8", "--kind", "database", "--hosts", "app1")
    assert on.returncode == 0, on.stderr
    listed = lab.run("fault", "list").stdout
    assert "app1" in listed and "error_burst" in listed and "app2" not in listed

    def database_errors():
        return [r for r in lab.log_records("app1")[before:] if r["level"] == "ERROR"]

    errors = wait_for(database_errors, 15, what="ERROR records on app1")
    for record in errors:
        assert record["status"] == 503
        assert record["endpoint"] in ("/api/v1/schedules", "/api/v1/assignments")
        assert record["exception"]["type"] == "OperationalError"
        assert "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError)" in record["exception"]["traceback"]
        assert record["request_id"] and record["duration_ms"] >= 0
        assert record["timestamp"][-6] in "+-"  # ISO 8601 with an offset
    assert not [r for r in lab.log_records("app2") if r["level"] == "ERROR"]

    five_xx = 'sum by (host) (rate(http_requests_total{status=~"5.."}[30s]))'
    rates = wait_for(lambda: {r["metric"]["host"]: float(r["value"][1]) for r in lab.query(five_xx)}.get("app1"), 30,
                     what="5xx rate of app1 in Prometheus")
    assert rates > 0

    alerts = wait_for(lambda: lab.alerts("HighErrorRate"), 45, what="HighErrorRate pending or firing")
    assert {a["labels"]["host"] for a in alerts} == {"app1"}
    assert alerts[0]["state"] in ("pending", "firing")
    assert alerts[0]["labels"]["severity"] == "critical"
    assert alerts[0]["annotations"]["playbook"] == "high_error_rate.yml"
    assert "HighErrorRate" in lab.run("alerts").stdout

    # firing goes through Alertmanager to the critical receiver (the lab's webhook stands in for Slack/PagerDuty)
    def notified():
        return [n for n in HTTP.get(f"{lab.webhook}/notifications", timeout=5).json()
                if n["receiver"] == "critical-alerts" and any(a["labels"].get("alertname") == "HighErrorRate" for a in n["alerts"])]

    notification = wait_for(notified, 75, interval=2, what="HighErrorRate notification to critical-alerts")[0]
    assert notification["status"] == "firing"
    assert notification["group_labels"] == {"alertname": "HighErrorRate", "severity": "critical", "service": "residency-scheduler-backend"}

    off = lab.run("fault", "error_burst", "off")
    assert off.returncode == 0, off.stderr
    token = lab.token("app1")
    assert [lab.get("app1", "/api/v1/schedules", token).status_code for _attempt in range(10)] == [200] * 10
    wait_for(lambda: not lab.alerts("HighErrorRate"), 60, what="HighErrorRate resolved after the fault was switched off")


def test_defective_release_fails_and_rollback_fixes_it(lab):
    deploy = lab.run("deploy", "v1.5.0", "--defect", "authentication", "--defect-rate", "1.0", "--hosts", "app2")
    assert deploy.returncode == 0, deploy.stderr
    assert HTTP.get(f"{lab.apps['app2']}/health", timeout=5).json()["version"] == "v1.5.0"
    assert HTTP.get(f"{lab.apps['app1']}/health", timeout=5).json()["version"] == "v1.4.1"
    token = lab.token("app1")  # the hosts share the signing key, as a real fleet does
    before = len(lab.log_records("app2"))
    assert {lab.get("app2", "/api/v1/assignments", token).status_code for _attempt in range(5)} == {500}
    jwt_errors = [r for r in lab.log_records("app2")[before:] if r["level"] == "ERROR" and r["endpoint"] == "/api/v1/assignments"]
    assert len(jwt_errors) >= 5
    assert {r["exception"]["type"] for r in jwt_errors} == {"JWTError"}
    assert "jose.exceptions.JWTError" in jwt_errors[0]["exception"]["traceback"]
    assert 'app_info{version="v1.5.0"} 1.0' in HTTP.get(f"{lab.apps['app2']}/metrics", timeout=5).text

    rollback = lab.run("rollback", "--hosts", "app2")
    assert rollback.returncode == 0, rollback.stderr
    assert "v1.5.0 -> v1.4.1" in rollback.stdout
    assert os.readlink(lab.state_dir / "hosts" / "app2" / "srv" / "releases" / "current") == "v1.4.1"
    assert [lab.get("app2", "/api/v1/assignments", token).status_code for _attempt in range(10)] == [200] * 10

    again = lab.run("deploy", "v1.5.0", "--hosts", "app2")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_bad_input_is_named(lab):
    unknown_host = lab.run("fault", "error_burst", "on", "--hosts", "app9")
    assert unknown_host.returncode == 1 and "app9" in unknown_host.stderr
    bad_rate = lab.run("fault", "error_burst", "on", "--rate", "1.5")
    assert bad_rate.returncode == 2 and "--rate" in bad_rate.stderr
    bad_version = lab.run("deploy", "../escape")
    assert bad_version.returncode == 1 and "VERSION" in bad_version.stderr


def test_down_stops_everything(lab):
    pids = lab.all_pids()
    down = lab.run("down")
    assert down.returncode == 0, down.stderr
    assert "lab down in" in down.stdout
    assert [pid for pid in pids if _alive(pid)] == []
    assert [port + lab.offset for port in BASE_PORTS if not _free(port + lab.offset)] == []
    lab_id = hashlib.sha256(str(lab.state_dir.resolve()).encode()).hexdigest()[:8]
    mounts = Path("/proc/self/mounts").read_text(encoding="utf-8")
    assert f"/run/sre-runbooks-lab/{lab_id}/" not in mounts and str(lab.state_dir) not in mounts
    assert not list(Path("/sys/fs/cgroup").glob(f"*/sre-lab-{lab_id}")) and not Path(f"/sys/fs/cgroup/sre-lab-{lab_id}").exists()
    again = lab.run("down")
    assert again.returncode == 0 and "not running" in again.stdout
    assert lab.run("status").returncode == 3


def test_lab_rules_check_and_pass_their_promtool_tests():
    promtool = "/usr/bin/promtool"
    rules = REPO / "prometheus"
    check = subprocess.run([promtool, "check", "rules", *map(str, sorted((rules / "rules").glob("*.yml")))],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", *map(str, sorted((rules / "tests").glob("*.yml")))],
                          capture_output=True, text=True, check=False)
    assert unit.returncode == 0, unit.stdout + unit.stderr


@pytest.mark.parametrize("log_format", ["text", "logfmt", "json"])
def test_app_log_formats(tmp_path, log_format):
    """Each LOG_FORMAT writes an access line and an error with its exception, in that format's layout."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from loguru import logger\n"
        "from scheduler import logs\n"
        "logs.configure(__import__('pathlib').Path(sys.argv[2]), sys.argv[3], 'INFO', host='app1')\n"
        "logger.bind(endpoint='/api/v1/people', status=200).info('GET /api/v1/people 200')\n"
        "try:\n"
        "    {}['rotation_template_id']\n"
        "except KeyError as exc:\n"
        "    logger.opt(exception=exc).bind(endpoint='/api/v1/assignments', status=500).error('Unhandled error')\n"
    )
    log_file = tmp_path / "scheduler.log"
    python = REPO / ".venv" / "bin" / "python"
    subprocess.run([str(python), "-c", script, str(REPO / "lab"), str(log_file), log_format], check=True, timeout=30)
    text = log_file.read_text(encoding="utf-8")
    if log_format == "json":
        access, error = [json.loads(line) for line in text.splitlines()]
        assert set(access) >= {"timestamp", "level", "logger", "message", "module", "function", "line", "exception", "process", "thread"}
        assert access["exception"] is None and access["endpoint"] == "/api/v1/people"
        assert error["exception"]["type"] == "KeyError" and "KeyError: 'rotation_template_id'" in error["exception"]["traceback"]
    elif log_format == "text":
        lines = text.splitlines()
        # Loguru's default layout: YYYY-MM-DD HH:mm:ss.SSS | LEVEL    | name:function:line - message
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| INFO     \| __main__:<module>:\d+ - GET /api/v1/people 200$", lines[0])
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| ERROR    \| __main__:<module>:\d+ - Unhandled error$", lines[1])
        assert "KeyError: 'rotation_template_id'" in text
    else:
        access, error = text.splitlines()
        assert "level=INFO" in access and "endpoint=/api/v1/people" in access and 'message="GET /api/v1/people 200"' in access
        assert "level=ERROR" in error and "exception_type=KeyError" in error and "status=500" in error


def test_seed_is_deterministic_and_refuses_an_acgme_violation():
    """The seeder's schedule checks (no database needed): same data for the same start, violations named."""
    import sys  # pylint: disable=import-outside-toplevel

    sys.path.insert(0, str(REPO / "lab"))
    try:
        from scheduler.db import seed  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(str(REPO / "lab"))
    start = seed.monday_of(seed.date(2026, 11, 25))
    first, second = seed.generate(start), seed.generate(start)
    assert first["assignments"] == second["assignments"] and len(first["assignments"]) > 1500
    checks = seed.check_acgme(first)
    assert checks["max_weekly_hours_4wk_avg"] <= 80 and checks["pgy1_blocks_supervised"] == 112
    pgy1 = next(p["id"] for p in first["people"] if p["pgy_level"] == 1)
    weekend_blocks = [b for b in first["blocks"] if b["is_weekend"] and (b["date"] - start).days < 7]  # the first weekend
    taken = {(a["block_id"], a["person_id"]) for a in first["assignments"]}
    extra = [{**first["assignments"][0], "block_id": b["id"], "person_id": pgy1} for b in weekend_blocks if (b["id"], pgy1) not in taken]
    with pytest.raises(ValueError, match="no day off"):
        seed.check_acgme({**first, "assignments": first["assignments"] + extra})
    unsupervised = [a for a in first["assignments"] if not (a["block_id"] == 1 and a["role"] == "supervising")]
    with pytest.raises(ValueError, match="without a supervising faculty"):
        seed.check_acgme({**first, "assignments": unsupervised})
