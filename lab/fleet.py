"""The lab's fleet: which systemd hosts exist, what runs on them, and how each is prepared.

Every host is a systemd-nspawn machine from lab/hosts.py (Debian 12, systemd as
PID 1, sshd on its own loopback port). Hosts share the machine's network, so
every service listens on its own port; LAB_PORT_OFFSET moves all of them,
sshd included.

A host's configuration (unit files, their environment, daemon configs and the
`multi-user.target.wants` links that enable them) is written into its overlay
upper dir before it boots, like an image customised for one machine: systemd
starts the services as part of the boot. What needs a running service
(database roles, schema and seed data, the ML model home) is done after boot.

Standard library only (the lab CLI runs it); the database seeder runs as a
subprocess with the venv's python.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
REPO = LAB_DIR.parent
sys.path.insert(0, str(LAB_DIR))

import hosts  # noqa: E402  (lab/hosts.py)

RULES_DIR = REPO / "prometheus" / "rules"  # the collection's rules (prometheus/), one copy for the lab and production
UNITS_DIR = LAB_DIR / "units"
WEBHOOK_SCRIPT = LAB_DIR / "alert_webhook.py"

# The real system's paths inside the app hosts (docs/lab.md).
SCHEDULER_SRV = "/srv/residency-scheduler"
SCHEDULER_LOG_DIR = "/var/log/app"
HEART_DISEASE_HOME = "/opt/heart-disease"
DATABASE = "residency_scheduler"
DB_USER = "scheduler"
POSTGRES_VERSION = "15"
REDIS_MAXMEMORY = "64mb"
DB_POOL_SIZE = 5
DB_POOL_OVERFLOW = 5
SCHEDULE_CACHE_TTL = 30
WORKER_CHECK_INTERVAL = 10  # seconds between ACGME checks (beat's schedule in the lab)
MEMORY_BUDGET_MB = 384  # an app host's memory as node_memory_* report it (lab/scheduler/metrics.py)


@dataclass(frozen=True)
class Service:
    """One systemd unit of a host, and how to tell it is healthy."""

    unit: str
    kind: str
    port: int | None = None  # base port, moved by LAB_PORT_OFFSET
    health: str | None = None  # HTTP path answering 200 when healthy
    start_after_boot: bool = False  # enabled and started once its data exists (not at boot)


@dataclass(frozen=True)
class HostSpec:
    name: str
    groups: tuple[str, ...]
    ssh_port: int  # base port, moved by LAB_PORT_OFFSET
    services: tuple[Service, ...] = ()
    python: bool = False  # binds the repo and its venv interpreter read-only
    describe: str = ""


FLEET = (
    HostSpec("app1", ("app",), 2201, (Service("residency-scheduler-backend.service", "scheduler", 18001, "/health"),),
             python=True, describe="Residency Scheduler backend"),
    HostSpec("app2", ("app",), 2202, (Service("residency-scheduler-backend.service", "scheduler", 18002, "/health"),),
             python=True, describe="Residency Scheduler backend"),
    HostSpec("worker1", ("worker",), 2203, (Service("residency-scheduler-celery-worker.service", "celery", 18003, "/metrics"),),
             python=True, describe="Celery worker (stand-in)"),
    HostSpec("db1", ("db",), 2204, (Service("postgresql@15-main.service", "postgres", 15432),),
             describe=f"PostgreSQL {POSTGRES_VERSION}, database {DATABASE}"),
    HostSpec("cache1", ("cache",), 2205, (Service("redis-server.service", "redis", 16379),),
             describe=f"Redis, maxmemory {REDIS_MAXMEMORY}"),
    HostSpec("ml1", ("ml_api", "ml_worker"), 2206,
             (Service("heart-disease-api.service", "ml_api", 18101, "/health", start_after_boot=True),
              Service("heart-disease-worker.service", "ml_worker", 18102, "/health", start_after_boot=True)),
             python=True, describe="Heart Disease Prediction API and worker"),
    HostSpec("mon1", ("monitoring",), 2207,
             (Service("prometheus.service", "prometheus", 19090, "/-/ready"),
              Service("prometheus-alertmanager.service", "alertmanager", 19093, "/-/ready"),
              Service("lab-alert-webhook.service", "webhook", 19094, "/health")),
             describe="Prometheus, Alertmanager, webhook receiver"),
)
HOSTS = {spec.name: spec for spec in FLEET}
APP_HOSTS = tuple(spec.name for spec in FLEET if "app" in spec.groups)


class FleetError(Exception):
    """A host or service of the fleet could not be prepared or did not come up."""


@dataclass(frozen=True)
class Ports:
    offset: int = 0

    def ssh(self, host: str) -> int:
        return HOSTS[host].ssh_port + self.offset

    def service(self, host: str, kind: str) -> int:
        for service in HOSTS[host].services:
            if service.kind == kind and service.port:
                return service.port + self.offset
        raise KeyError(f"{host} has no {kind} service with a port")

    def address(self, host: str, kind: str) -> str:
        return f"127.0.0.1:{self.service(host, kind)}"

    def app_addresses(self) -> dict[str, str]:
        return {host: self.address(host, "scheduler") for host in APP_HOSTS}

    @property
    def postgres(self) -> int:
        return self.service("db1", "postgres")

    @property
    def redis(self) -> int:
        return self.service("cache1", "redis")

    @property
    def prometheus(self) -> str:
        return self.address("mon1", "prometheus")

    @property
    def alertmanager(self) -> str:
        return self.address("mon1", "alertmanager")

    @property
    def webhook(self) -> str:
        return self.address("mon1", "webhook")

    def all_listening(self) -> list[tuple[str, int]]:
        """(what, port) of every TCP port the fleet listens on."""
        ports = []
        for spec in FLEET:
            ports.append((f"{spec.name} sshd", self.ssh(spec.name)))
            ports.extend((f"{spec.name} {s.unit}", s.port + self.offset) for s in spec.services if s.port)
        return ports


# --------------------------------------------------------------------------- secrets


def load_secrets(state_dir: Path) -> dict:
    """The lab's secrets (0600, generated once per state dir); never printed."""
    path = state_dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    values = {"db_password": secrets.token_urlsafe(24), "secret_key": secrets.token_urlsafe(32)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(values, handle)
    return values


# --------------------------------------------------------------------------- host disks


class Disk:
    """Writes into a host's overlay upper dir before it boots (paths as seen inside the host)."""

    def __init__(self, host: str, lower: Path):
        self.upper = hosts.host_dir(host) / "upper"
        self.lower = lower

    def path(self, inside: str) -> Path:
        return self.upper / inside.lstrip("/")

    def write(self, inside: str, text: str, mode: int = 0o644, owner_like_base: bool = False) -> None:
        """Write a file; ``owner_like_base`` keeps the packaged file's owner (e.g. redis:redis)."""
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(mode)
        if owner_like_base:
            packaged = (self.lower / inside.lstrip("/")).stat()
            os.chown(target, packaged.st_uid, packaged.st_gid)

    def base_text(self, inside: str) -> str:
        """A file as the base image has it (to extend a packaged config)."""
        return (self.lower / inside.lstrip("/")).read_text(encoding="utf-8")

    def install_unit(self, unit: str, text: str | None = None, enable: bool = True) -> None:
        if text is not None:
            self.write(f"/etc/systemd/system/{unit}", text)
        if enable:
            wants = self.path("/etc/systemd/system/multi-user.target.wants")
            wants.mkdir(parents=True, exist_ok=True)
            link = wants / unit
            if not link.is_symlink():
                target = f"/etc/systemd/system/{unit}" if text is not None else f"/lib/systemd/system/{unit}"
                link.symlink_to(target)


def unit_text(name: str, **values) -> str:
    """A unit file from lab/units/ with its {placeholders} filled."""
    return (UNITS_DIR / name).read_text(encoding="utf-8").format(**values)


def _env_file(values: dict) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


@dataclass
class Fleet:
    """One lab's fleet: its state dir, ports and secrets."""

    state_dir: Path
    ports: Ports
    log_format: str = "json"
    secrets: dict = field(default_factory=dict)

    # -- where things are on the machine --

    def host_dir(self, host: str) -> Path:
        return hosts.host_dir(host)

    def srv_dir(self, host: str) -> Path:
        """Bound read-write at /srv/residency-scheduler in an app host."""
        return self.host_dir(host) / "srv"

    def releases_dir(self, host: str) -> Path:
        return self.srv_dir(host) / "releases"

    def fault_file(self, host: str) -> Path:
        return self.srv_dir(host) / "faults.json"

    def log_dir(self, host: str) -> Path:
        """Bound read-write at /var/log/app."""
        return self.host_dir(host) / "log"

    def heart_disease_home(self) -> Path:
        return self.host_dir("ml1") / "heart-disease"

    def database_url(self) -> str:
        return f"postgresql://{DB_USER}:{self.secrets['db_password']}@127.0.0.1:{self.ports.postgres}/{DATABASE}"

    # -- binds --

    def binds(self, spec: HostSpec) -> list:
        binds = list(hosts.python_binds()) if spec.python else []
        if "app" in spec.groups:
            binds += [hosts.Bind(self.srv_dir(spec.name), Path(SCHEDULER_SRV), False),
                      hosts.Bind(self.log_dir(spec.name), Path(SCHEDULER_LOG_DIR), False)]
        if "worker" in spec.groups:
            binds.append(hosts.Bind(self.log_dir(spec.name), Path(SCHEDULER_LOG_DIR), False))
        if "ml_api" in spec.groups:
            binds.append(hosts.Bind(self.heart_disease_home(), Path(HEART_DISEASE_HOME), False))
        if "monitoring" in spec.groups:
            binds += [hosts.Bind(RULES_DIR, Path("/etc/prometheus/rules"), True),
                      hosts.Bind(Path(prometheus_binary()), Path("/usr/bin/prometheus"), True),
                      hosts.Bind(Path(alertmanager_binary()), Path("/usr/bin/prometheus-alertmanager"), True),
                      # its notification templates (default.tmpl), from the same package
                      hosts.Bind(Path("/usr/share/prometheus/alertmanager"), Path("/usr/share/prometheus/alertmanager"), True)]
        return binds

    def boot_specs(self) -> list[dict]:
        return [{"name": spec.name, "ssh_port": self.ports.ssh(spec.name), "binds": self.binds(spec)} for spec in FLEET]

    # -- disks --

    def prepare_disks(self, lower: Path) -> None:
        """Write every host's configuration into its upper dir (before boot)."""
        for spec in FLEET:
            disk = Disk(spec.name, lower)
            for group in spec.groups:
                prepare = getattr(self, f"_prepare_{group}", None)
                if prepare:
                    prepare(spec, disk)

    def _python_unit(self, description: str, module: str, env_file: str, working_dir: Path = LAB_DIR,
                     restart: str = "on-failure", extra: str = "") -> str:
        return unit_text("python-service.service.in", description=description, env_file=env_file,
                         working_dir=working_dir, python=REPO / ".venv" / "bin" / "python", module=module,
                         restart=restart, extra=extra)

    def _scheduler_env(self, host: str) -> dict:
        return {
            "SCHEDULER_HOST_ID": host,
            "LOG_FORMAT": self.log_format,
            "SECRET_KEY": self.secrets["secret_key"],
            "DATABASE_URL": self.database_url(),
            "DB_POOL_SIZE": DB_POOL_SIZE,
            "DB_POOL_MAX_OVERFLOW": DB_POOL_OVERFLOW,
            "REDIS_URL": f"redis://127.0.0.1:{self.ports.redis}/0",
            "SCHEDULE_CACHE_TTL": SCHEDULE_CACHE_TTL,
            "LAB_MEMORY_BUDGET_MB": MEMORY_BUDGET_MB,
            "PYTHONPATH": LAB_DIR,
            "PYTHONUNBUFFERED": 1,
        }

    def _prepare_app(self, spec: HostSpec, disk: Disk) -> None:
        host = spec.name
        self.log_dir(host).mkdir(parents=True, exist_ok=True)
        self.releases_dir(host).mkdir(parents=True, exist_ok=True)
        env = {**self._scheduler_env(host), "SCHEDULER_BIND": "127.0.0.1", "SCHEDULER_PORT": self.ports.service(host, "scheduler"),
               "LOG_FILE": f"{SCHEDULER_LOG_DIR}/scheduler.log", "SCHEDULER_RELEASES_DIR": f"{SCHEDULER_SRV}/releases",
               "SCHEDULER_FAULT_FILE": f"{SCHEDULER_SRV}/faults.json"}
        disk.write("/etc/default/residency-scheduler-backend", _env_file(env), mode=0o600)
        disk.install_unit("residency-scheduler-backend.service", self._python_unit(
            "Residency Scheduler backend (lab stand-in)", "scheduler",
            "/etc/default/residency-scheduler-backend"))

    def _prepare_worker(self, spec: HostSpec, disk: Disk) -> None:
        self.log_dir(spec.name).mkdir(parents=True, exist_ok=True)
        env = {**self._scheduler_env(spec.name), "LOG_FILE": f"{SCHEDULER_LOG_DIR}/celery-worker.log",
               "WORKER_METRICS_PORT": self.ports.service(spec.name, "celery"), "WORKER_CHECK_INTERVAL": WORKER_CHECK_INTERVAL}
        disk.write("/etc/default/residency-scheduler-celery-worker", _env_file(env), mode=0o600)
        disk.install_unit("residency-scheduler-celery-worker.service", self._python_unit(
            "Residency Scheduler Celery worker (lab stand-in)", "scheduler.worker",
            "/etc/default/residency-scheduler-celery-worker"))

    def _prepare_db(self, _spec: HostSpec, disk: Disk) -> None:
        disk.write(f"/etc/postgresql/{POSTGRES_VERSION}/main/conf.d/50-lab.conf", (
            "# Written by lab/fleet.py: hosts share the machine's network, so the lab's cluster has its own port.\n"
            f"port = {self.ports.postgres}\n"
            "listen_addresses = '127.0.0.1'\n"
            "max_connections = 50\n"
            "shared_preload_libraries = 'pg_stat_statements'\n"
            "pg_stat_statements.track = all\n"
            "log_min_duration_statement = 1000\n"
        ))
        disk.install_unit("postgresql.service")

    def _prepare_cache(self, _spec: HostSpec, disk: Disk) -> None:
        base = disk.base_text("/etc/redis/redis.conf")
        # redis.conf: a later directive wins, so the lab's settings are appended to the packaged file.
        disk.write("/etc/redis/redis.conf", base + (
            "\n# --- lab/fleet.py: own port on the shared loopback, a memory cap, an eviction policy\n"
            f"port {self.ports.redis}\nbind 127.0.0.1\nmaxmemory {REDIS_MAXMEMORY}\nmaxmemory-policy allkeys-lru\n"
            "save \"\"\n"
        ), mode=0o640, owner_like_base=True)
        disk.install_unit("redis-server.service")

    def _prepare_ml_api(self, _spec: HostSpec, disk: Disk) -> None:
        self.heart_disease_home().mkdir(parents=True, exist_ok=True)
        for kind, module in (("ml_api", "lab.heart_disease.api"), ("ml_worker", "lab.heart_disease.worker")):
            unit = "heart-disease-api.service" if kind == "ml_api" else "heart-disease-worker.service"
            disk.install_unit(unit, unit_text(
                "heart-disease.service.in", description=f"Heart Disease Prediction {'API' if kind == 'ml_api' else 'worker'} (lab stand-in)",
                working_dir=REPO, python=REPO / ".venv" / "bin" / "python", module=module, home=HEART_DISEASE_HOME,
                port=self.ports.service("ml1", kind)), enable=False)

    def _prepare_monitoring(self, _spec: HostSpec, disk: Disk) -> None:
        disk.write("/etc/prometheus/prometheus.yml", json.dumps(self.prometheus_config(), indent=2) + "\n")
        disk.path("/etc/prometheus/rules").mkdir(parents=True, exist_ok=True)
        disk.write("/etc/alertmanager/alertmanager.yml", json.dumps(self.alertmanager_config(), indent=2) + "\n")
        disk.write("/usr/local/bin/lab-alert-webhook", WEBHOOK_SCRIPT.read_text(encoding="utf-8"), mode=0o755)
        for touch in ("/usr/bin/prometheus", "/usr/bin/prometheus-alertmanager"):
            disk.write(touch, "")  # bind mount targets
        disk.install_unit("prometheus.service", unit_text("prometheus.service.in", address=self.ports.prometheus,
                                                          alertmanager=self.ports.alertmanager))
        disk.install_unit("prometheus-alertmanager.service", unit_text("prometheus-alertmanager.service.in",
                                                                       address=self.ports.alertmanager))
        disk.install_unit("lab-alert-webhook.service", unit_text("lab-alert-webhook.service.in", address=self.ports.webhook))

    # -- monitoring configs (JSON is YAML) --

    def prometheus_config(self) -> dict:
        def job(name: str, targets: dict[str, str], service: str) -> dict:
            return {"job_name": name, "static_configs": [{"targets": [address], "labels": {"host": host, "service": service}}
                                                         for host, address in targets.items()]}

        return {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s", "external_labels": {"lab": "residency-scheduler"}},
            "rule_files": ["/etc/prometheus/rules/*.yml"],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [self.ports.alertmanager]}]}]},
            "scrape_configs": [
                job("residency-scheduler-backend", self.ports.app_addresses(), "residency-scheduler-backend"),
                job("residency-scheduler-celery-worker", {"worker1": self.ports.address("worker1", "celery")},
                    "residency-scheduler-celery-worker"),
                job("heart-disease-api", {"ml1": self.ports.address("ml1", "ml_api")}, "heart-disease-api"),
                job("heart-disease-worker", {"ml1": self.ports.address("ml1", "ml_worker")}, "heart-disease-worker"),
                job("prometheus", {"mon1": self.ports.prometheus}, "prometheus"),
                job("alertmanager", {"mon1": self.ports.alertmanager}, "alertmanager"),
            ],
        }

    def alertmanager_config(self) -> dict:
        receivers = ("critical-alerts", "warning-alerts", "database-alerts", "infrastructure-alerts", "scheduling-alerts",
                     "compliance-alerts")

        def receiver(name: str) -> dict:
            return {"name": name, "webhook_configs": [{"url": f"http://{self.ports.webhook}/alerts/{name}", "send_resolved": True}]}

        # by concern first (and on), then critical ones also page: as the real routing tree
        routes = [
            {"matchers": ['alertname=~"ACGME.*|RepeatedACGMEViolations"'], "receiver": "compliance-alerts", "continue": True},
            {"matchers": ['alertname=~"WorkHourThresholdApproaching"'], "receiver": "scheduling-alerts", "continue": True},
            {"matchers": ['alertname=~"DatabaseConnectionPoolExhaustion|SlowDatabaseQueries|PostgreSQL.*"'],
             "receiver": "database-alerts", "continue": True},
            {"matchers": ['alertname=~"HighCPUUsage|LowMemory|ServiceDown|LowCacheHitRate"'],
             "receiver": "infrastructure-alerts", "continue": True},
            {"matchers": ['severity="critical"'], "receiver": "critical-alerts"},
        ]
        return {
            "route": {"receiver": "warning-alerts", "group_by": ["alertname", "severity", "service"],
                      "group_wait": "5s", "group_interval": "10s", "repeat_interval": "1h", "routes": routes},
            "receivers": [receiver(name) for name in receivers],
        }

    # -- after boot --

    def provision_database(self) -> dict:
        """Role, database and extension (as postgres, over SSH; the password goes on stdin), then schema and seed."""
        started = time.monotonic()
        password = self.secrets["db_password"].replace("'", "''")
        script = (
            "\\set ON_ERROR_STOP on\n"
            f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{password}';\n"
            f"CREATE DATABASE {DATABASE} OWNER {DB_USER};\n"
            f"\\connect {DATABASE}\n"
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;\n"
            f"GRANT pg_read_all_stats TO {DB_USER};\n"
        )
        deadline = time.monotonic() + 30
        while True:
            ready = hosts.run("db1", f"pg_isready -q -h 127.0.0.1 -p {self.ports.postgres}", check=False, timeout=15)
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise FleetError(f"PostgreSQL on db1 (port {self.ports.postgres}) not accepting connections after 30s")
            time.sleep(0.2)
        result = hosts.run("db1", "runuser -u postgres -- psql -q -X -d postgres -f -", input=script, check=False, timeout=60)
        if result.returncode != 0:
            raise FleetError(f"creating role and database on db1 failed: {result.stderr.strip()[-500:]}")
        seed = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "scheduler.db.seed", "--schema"],
                              env={**os.environ, "DATABASE_URL": self.database_url(), "PYTHONPATH": str(LAB_DIR)},
                              cwd=str(LAB_DIR), capture_output=True, text=True, timeout=120, check=False)
        if seed.returncode != 0:
            raise FleetError(f"schema and seed of {DATABASE} failed: {seed.stderr.strip()[-800:]}")
        summary = json.loads(seed.stdout or "{}")
        summary["seconds"] = round(time.monotonic() - started, 2)
        return summary

    def build_heart_disease(self) -> subprocess.Popen:
        """Start building the ML model home (about 3 s); the caller waits for it."""
        home = self.heart_disease_home()
        home.mkdir(parents=True, exist_ok=True)
        log = open(self.host_dir("ml1") / "heart-disease-build.log", "wb")  # pylint: disable=consider-using-with
        try:
            argv = [str(REPO / ".venv" / "bin" / "python"), "-m", "lab.heart_disease.build", "--home", str(home),
                    "--api-port", str(self.ports.service("ml1", "ml_api")), "--worker-port", str(self.ports.service("ml1", "ml_worker"))]
            return subprocess.Popen(argv, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # pylint: disable=consider-using-with
        finally:
            log.close()

    def start_heart_disease(self, build: subprocess.Popen) -> None:
        if build.wait(timeout=120) != 0:
            log = self.host_dir("ml1") / "heart-disease-build.log"
            raise FleetError(f"building the Heart Disease model home failed; see {log}:\n{log.read_text(encoding='utf-8')[-800:]}")
        hosts.run("ml1", "systemctl enable --now heart-disease-api.service heart-disease-worker.service", timeout=60)


def prometheus_binary() -> str:
    binary = os.environ.get("LAB_PROMETHEUS") or shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(binary, os.X_OK):
        raise FleetError(f"no Prometheus at {binary}: install the Debian package (apt-get install -y prometheus) or set LAB_PROMETHEUS")
    return binary


def alertmanager_binary() -> str:
    binary = os.environ.get("LAB_ALERTMANAGER") or shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
    if not os.access(binary, os.X_OK):
        raise FleetError(f"no Alertmanager at {binary}: apt-get install -y prometheus-alertmanager, or set LAB_ALERTMANAGER")
    return binary
