"""The harness every lab scenario's tests use: the lab's faults, Prometheus, and the runbook playbooks run as on call.

A scenario's ``tests/conftest.py`` puts ``molecule/shared`` on ``sys.path`` and does ``from harness import *``.

A test per alert (``test_<alert>.py``) follows the same shape::

    def test_<alert>(runbook):
        before = snapshot()                     # the state the remediation would change
        with fault("name", "--option", "value"):
            wait_for_value("<the alert's PromQL>", lambda v: v > threshold, "the alert's condition")
            dry = runbook("<alert>.yml", remediate=False)
            assert snapshot() == before          # remediation off changes nothing
            run = runbook("<alert>.yml", remediate=True)
            assert run.ok and "<cause>" in run.decision["cause"]
            # ... the fault is gone (pool under 90 %, IP refused, query terminated, ...)
            rerun = runbook("<alert>.yml", remediate=True)
            assert rerun.actions == [] and not rerun.fleet_changed

``fault`` always switches the fault off again, so a failing test leaves the lab clean for the next one.

State to compare before and after a run: ``service_state()`` (each app host's backend main pid and start time: a
restart changes them, nothing else does), ``file_digest(host, path)``, ``app_health(host)``. ``as_alertmanager()``
turns a Prometheus alert (``wait_for_alert(..., state=("pending", "firing"), host="app1")``) into the ``alert`` a
playbook gets from Alertmanager / EDA. The lab's process faults (memory_leak, cpu_burn, pool_leak, slow_responses,
cache_flush) last until the backend restarts, so a remediation that restarts it really clears them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
LAB_STATE = Path(os.environ["LAB_STATE_DIR"])
INCIDENTS = Path(os.environ["RUNBOOK_INCIDENT_DIR"])
PORT_OFFSET = int(os.environ.get("LAB_PORT_OFFSET", "0"))
PROMETHEUS_URL = f"http://127.0.0.1:{19090 + PORT_OFFSET}"
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
                   r"failed=(?P<failed>\d+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``lab/lab ARGS`` against this scenario's lab; fails the test with the lab's own message."""
    proc = subprocess.run([str(REPO / "lab" / "lab"), *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "LAB_STATE_DIR": str(LAB_STATE), "LAB_PORT_OFFSET": str(PORT_OFFSET)})
    assert proc.returncode == 0, f"lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@contextlib.contextmanager
def fault(name: str, *options: str) -> Iterator[subprocess.CompletedProcess]:
    """The lab fault NAME on for the block, off again afterwards whatever happens."""
    started = lab("fault", name, "on", *options)
    try:
        yield started
    finally:
        lab("fault", name, "off")


def lab_ssh(host: str, command: str, timeout: float = 60) -> str:
    """Run a shell command in a lab host over SSH (as the engineer would with ``lab/lab ssh``)."""
    return lab("ssh", host, "--", command, timeout=timeout).stdout


def prometheus_value(query: str) -> float | None:
    """The instant value of a scalar-ish PromQL query (first series), or None when it returns nothing."""
    response = requests.get(f"{PROMETHEUS_URL}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value  # NaN (0/0) means no traffic yet


def wait_for_value(query: str, predicate: Callable[[float], bool], what: str, timeout: float = 150, interval: float = 3) -> float:
    """Poll Prometheus until QUERY's value satisfies PREDICATE; fails naming WHAT and the last value seen."""
    deadline = time.monotonic() + timeout
    last: float | None = None
    while time.monotonic() < deadline:
        last = prometheus_value(query)
        if last is not None and predicate(last):
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached within {timeout:.0f} s (last value {last}; query {query})")


def wait_for_alert(alertname: str, state: str | tuple[str, ...] = "firing", timeout: float = 180, **labels: str) -> dict:
    """Wait until Prometheus reports the alert in STATE (one state or a tuple of them) with LABELS; returns the alert
    (labels, annotations, state, activeAt, value). ``state=("pending", "firing")`` returns as soon as the condition holds."""
    states = (state,) if isinstance(state, str) else tuple(state)
    deadline = time.monotonic() + timeout
    seen: list[dict] = []
    while time.monotonic() < deadline:
        seen = requests.get(f"{PROMETHEUS_URL}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        for alert in seen:
            if (alert["labels"].get("alertname") == alertname and alert["state"] in states
                    and all(alert["labels"].get(k) == v for k, v in labels.items())):
                return alert
        time.sleep(3)
    raise AssertionError(f"{alertname} not {state} within {timeout:.0f} s; alerts: "
                         f"{[(a['labels'].get('alertname'), a['state']) for a in seen]}")


def as_alertmanager(alert: dict) -> dict:
    """A Prometheus alert (``wait_for_alert``) as Alertmanager's webhook / EDA delivers it to a playbook as ``alert``."""
    labels = dict(alert["labels"])
    return {"status": "firing", "labels": labels, "annotations": dict(alert.get("annotations") or {}),
            "startsAt": alert.get("activeAt", ""), "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": format(abs(hash(tuple(sorted(labels.items())))) % (1 << 64), "016x")}


APP_HOSTS = ("app1", "app2")
APP_PORTS = {"app1": 18001, "app2": 18002}
BACKEND = "residency-scheduler-backend"


def app_url(host: str = "app1") -> str:
    """The backend's base URL of an app host, on this lab's ports."""
    return f"http://127.0.0.1:{APP_PORTS[host] + PORT_OFFSET}"


def app_health(host: str) -> dict:
    """The backend's /health answer (status, release, active faults), or {} when it does not answer."""
    try:
        return requests.get(f"{app_url(host)}/health", timeout=5).json()
    except (requests.RequestException, ValueError):
        return {}


def service_state(hosts: tuple[str, ...] = APP_HOSTS, unit: str = BACKEND) -> dict[str, tuple[str, str]]:
    """Per host, the unit's main pid and when it started: a restart changes both, nothing else does."""
    state = {}
    for host in hosts:
        shown = dict(line.split("=", 1) for line in lab_ssh(host, f"systemctl show -p MainPID -p ExecMainStartTimestamp {unit}")
                     .splitlines() if "=" in line)
        state[host] = (shown.get("MainPID", ""), shown.get("ExecMainStartTimestamp", ""))
    return state


def file_digest(host: str, path: str) -> str:
    """sha256 of a file in a lab host (compares configuration, even secret, without reading it)."""
    return lab_ssh(host, f"sha256sum {path}").split()[0]


@dataclass
class RunbookRun:
    """One ansible-playbook run: its output, the play recap per host and the incident record it wrote."""

    proc: subprocess.CompletedProcess
    record: dict[str, Any]
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.proc.returncode == 0

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    @property
    def decision(self) -> dict[str, Any]:
        return self.record.get("decision") or {}

    @property
    def actions(self) -> list[dict]:
        return self.record.get("actions") or []

    @property
    def report(self) -> str:
        path = Path(self.record.get("path", "")) / "report.md" if self.record.get("path") else None
        return path.read_text() if path and path.is_file() else ""

    @property
    def fleet_changed(self) -> dict[str, int]:
        """Lab hosts on which a task reported a change (localhost writes the incident record: not the fleet)."""
        return {host: counts["changed"] for host, counts in self.recap.items() if host != "localhost" and counts["changed"]}


# -- the secrets sweep: every runbook run is made with -vvv and searched for every secret the lab holds ------------

SECRET_NAME = re.compile(r"(secret|password|passwd|token|api_?key|private_?key)", re.IGNORECASE)
SECRET_MIN_LENGTH = 12  # shorter values (flags, ports) are no secret and would match by chance
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@\s]+:(?P<password>[^@\s]+)@", re.IGNORECASE)
# Every secret seen during this session, old ones included: a rotation retires a secret, it must not leak afterwards.
SECRETS_SEEN: dict[str, str] = {}


def _add_secret(found: dict[str, str], name: str, value: Any) -> None:
    if isinstance(value, str) and len(value.strip()) >= SECRET_MIN_LENGTH:
        found.setdefault(value.strip(), name)


def _secrets_in(found: dict[str, str], where: str, data: Any, key: str = "") -> None:
    """Values under secret-looking keys of a parsed YAML / JSON document (lists under such a key: every item)."""
    if isinstance(data, dict):
        for name, value in data.items():
            _secrets_in(found, where, value, f"{key}.{name}" if key else str(name))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _secrets_in(found, where, value, f"{key}[{index}]")
    elif SECRET_NAME.search(key.rsplit(".", 1)[-1]):
        _add_secret(found, f"{where}:{key}", data)


def lab_secrets() -> dict[str, str]:
    """Every secret the lab holds right now, value → a name for it (never print the value): secrets.json (database
    password, token signing key), each host's env files under /etc/default (SECRET_KEY, passwords in *_URL), the
    Heart Disease API's config.yaml (JWT secret, previous secrets, API keys), the keys a rotation wrote under its
    config/rotated/ and the lab's SSH private key.
    Redis has no password in the lab (nothing to read). Re-read after every run: rotations make new ones."""
    found: dict[str, str] = {}
    path = LAB_STATE / "secrets.json"
    if path.is_file():
        for name, value in json.loads(path.read_text(encoding="utf-8")).items():  # every value in it is a secret
            _add_secret(found, f"secrets.json:{name}", value)
    for env_file in sorted(LAB_STATE.glob("hosts/*/upper/etc/default/*")):
        host = env_file.relative_to(LAB_STATE / "hosts").parts[0]
        try:
            lines = env_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            name, sep, value = line.partition("=")
            if not sep:
                continue
            where = f"{host}:/etc/default/{env_file.name}:{name.strip()}"
            value = value.strip().strip("'\"")
            if SECRET_NAME.search(name):
                _add_secret(found, where, value)
            match = URL_PASSWORD.match(value)
            if match:
                _add_secret(found, f"{where} (password)", match["password"])
    config = LAB_STATE / "hosts" / "ml1" / "heart-disease" / "config" / "config.yaml"
    if config.is_file():
        import yaml  # pylint: disable=import-outside-toplevel
        _secrets_in(found, "ml1:/opt/heart-disease/config/config.yaml", yaml.safe_load(config.read_text(encoding="utf-8")))
    for secret_file in sorted(LAB_STATE.glob("hosts/ml1/heart-disease/config/rotated/*")):  # a rotation's new key, raw
        if secret_file.is_file():
            _add_secret(found, f"ml1:/opt/heart-disease/config/rotated/{secret_file.name}", secret_file.read_text(encoding="utf-8"))
    key = LAB_STATE / "ssh" / "id_ed25519"
    if key.is_file():
        body = [line for line in key.read_text(encoding="utf-8").splitlines() if line and not line.startswith("-----")]
        for index, line in enumerate(body):
            _add_secret(found, f"ssh/id_ed25519 (line {index + 1})", line)
    for value, name in found.items():
        if value not in SECRETS_SEEN:
            taken = sum(1 for seen in SECRETS_SEEN.values() if seen == name or seen.startswith(f"{name} (rotation "))
            SECRETS_SEEN[value] = f"{name} (rotation {taken + 1})" if taken else name  # the old one keeps the plain name
    return found


def _notifications_size() -> int:
    path = LAB_STATE / "hosts" / "mon1" / "upper" / "var" / "log" / "alertmanager-webhook" / "notifications.jsonl"
    return path.stat().st_size if path.is_file() else 0


def secret_leaks(output: dict[str, str], incidents: Path, notifications_from: int) -> list[str]:
    """Where each known secret (current and rotated away) appears: in OUTPUT (name → text, e.g. the run's stdout),
    in any file under INCIDENTS (timelines, reports, records, the notifications they record) or in what the lab's
    notification stand-in (Alertmanager's webhook receiver) received since byte NOTIFICATIONS_FROM. Names only."""
    lab_secrets()
    places = dict(output)
    if incidents.is_dir():
        for path in sorted(incidents.rglob("*")):
            if path.is_file():
                places[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    log = LAB_STATE / "hosts" / "mon1" / "upper" / "var" / "log" / "alertmanager-webhook" / "notifications.jsonl"
    if log.is_file():
        with log.open("rb") as handle:
            handle.seek(notifications_from)
            places["mon1:/var/log/alertmanager-webhook/notifications.jsonl"] = handle.read().decode("utf-8", "replace")
    leaks = []
    for value, name in SECRETS_SEEN.items():
        for where, text in places.items():
            at = text.find(value)
            if at >= 0:
                leaks.append(f"{name} in {where} (line {text.count(chr(10), 0, at) + 1})")
    return leaks


@pytest.fixture(name="runbook")
def runbook_fixture(tmp_path_factory) -> Callable[..., RunbookRun]:
    """``runbook("slow_response_time.yml", remediate=True, alert={...}, **extra_vars)`` runs it on the lab inventory.

    Each test gets its own incident directory, so a rerun joins (or, once resolved, follows) its own incident.
    Verification and escalation windows are short so a test takes seconds, not the runbook's 15 minutes.
    Every run is made with ``-vvv`` and then swept for secrets (``secret_leaks``): the lab's secrets are read before
    and after the run (a rotation's old and new ones), and one found in the output, the incident directory or the
    notifications fails the test naming the secret and where it was, never its value.
    """
    work = tmp_path_factory.mktemp("runbook")
    incidents = INCIDENTS / work.name

    def run(playbook: str, remediate: bool, alert: dict | None = None, **extra: Any) -> RunbookRun:
        variables: dict[str, Any] = {"runbook_remediate": remediate, "runbook_incident_dir": str(incidents),
                                     "runbook_poll_seconds": 5, "runbook_monitor_minutes": 0.5,
                                     "runbook_escalate_after_minutes": 2, **extra}
        if alert is not None:
            variables["alert"] = alert
        extra_file = work / f"extra-{time.monotonic_ns()}.json"
        extra_file.write_text(json.dumps(variables))
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "LAB_STATE_DIR": str(LAB_STATE),
               "LAB_PORT_OFFSET": str(PORT_OFFSET),
               # -vvv would indent every result (pretty JSON): one line each says the same, in less output to scan
               "ANSIBLE_CALLBACK_FORMAT_PRETTY": "false"}
        before = {p: p.stat().st_mtime for p in incidents.glob("*/incident.json")} if incidents.is_dir() else {}
        lab_secrets()
        notifications_from = _notifications_size()
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-vvv", "-i", str(REPO / "inventories" / "lab"),
                               "-e", f"@{extra_file}", str(REPO / "playbooks" / playbook)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
        leaks = secret_leaks({"ansible-playbook -vvv stdout": proc.stdout, "ansible-playbook -vvv stderr": proc.stderr},
                             incidents, notifications_from)
        if leaks:
            # pytrace=False: no traceback, whose frames would show the secrets
            pytest.fail(f"{playbook}: {len(leaks)} secret(s) leaked: " + "; ".join(leaks), pytrace=False)
        touched = [p for p in incidents.glob("*/incident.json") if before.get(p) != p.stat().st_mtime] if incidents.is_dir() else []
        newest = max(touched, key=lambda p: p.stat().st_mtime) if touched else None
        record = json.loads(newest.read_text()) if newest else {}
        if newest:
            record["path"] = str(newest.parent)
        recap = {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
                 for m in (RECAP.match(line) for line in proc.stdout.splitlines()) if m}
        return RunbookRun(proc=proc, record=record, recap=recap)

    return run


# -- helpers for the security alert tests (alerts8b) --------------------------------------------------------------

def psql(sql: str, database: str = "residency_scheduler") -> list[list[str]]:
    """Rows of SQL run as postgres in db1 (fields split on |): the state a test compares before and after."""
    out = lab_ssh("db1", f"runuser -u postgres -- psql -X -q -At -F '|' -d {database} <<'SQL'\n{sql}\nSQL\n")
    return [line.split("|") for line in out.splitlines() if line]


def app_denylist(host: str) -> list[dict]:
    """The application's denylist on an app host (sre.runbooks.ip_blocklist denylist_file), [] when absent."""
    path = LAB_STATE / "hosts" / host / "srv" / "denylist.json"
    return json.loads(path.read_text()).get("blocked", []) if path.is_file() else []


def clear_app_denylist(hosts: tuple[str, ...] = ("app1", "app2")) -> None:
    """Remove the application denylist a test left behind (the backends re-read it within a second)."""
    for host in hosts:
        (LAB_STATE / "hosts" / host / "srv" / "denylist.json").unlink(missing_ok=True)


def login_status(host: str, username: str, password: str = "lab-password", client: str | None = None) -> int:
    """Status of a login to HOST's backend, optionally as the client address CLIENT (X-Forwarded-For, as the proxy sends)."""
    headers = {"x-forwarded-for": client} if client else {}
    return requests.post(f"{app_url(host)}/api/v1/auth/login", json={"username": username, "password": password},
                         headers=headers, timeout=15).status_code


def security_state() -> dict[str, Any]:
    """What the security runbooks may change: each app host's denylist, every account's lock, MFA, password state and
    failed-login counter, every session's revocation, and the audit rows the remediations write."""
    return {
        "denylist": {host: sorted(e["address"] for e in app_denylist(host)) for host in ("app1", "app2")},
        "users": psql("SELECT username, is_locked, mfa_enabled, left(hashed_password, 7) = '!reset!', failed_login_attempts "
                      "FROM users ORDER BY id"),
        "sessions": psql("SELECT id, revoked_at IS NOT NULL FROM sessions ORDER BY id"),
        "audit": psql("SELECT count(*) FROM audit_log WHERE action LIKE 'sre_%'"),
    }


@contextlib.contextmanager
def accounts_restored(*usernames: str) -> Iterator[None]:
    """Put the accounts (lock, MFA, password, sessions) back as they were after the block: the lab's traffic logs in as one."""
    names = ", ".join("'" + u.replace("'", "''") + "'" for u in usernames)
    saved = psql(f"SELECT id, is_locked, coalesce(locked_at::text, ''), mfa_enabled, hashed_password, failed_login_attempts "
                 f"FROM users WHERE username IN ({names})")
    sessions = psql(f"SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username IN ({names}) AND s.revoked_at IS NULL")
    try:
        yield
    finally:
        for uid, locked, locked_at, mfa, hashed, failed in saved:
            psql(f"UPDATE users SET is_locked = {'true' if locked == 't' else 'false'}, "
                 f"locked_at = {('%s' % repr(locked_at)) if locked_at else 'NULL'}, mfa_enabled = {'true' if mfa == 't' else 'false'}, "
                 f"hashed_password = '{hashed}', failed_login_attempts = {int(failed)} WHERE id = {int(uid)}")
        if sessions:
            psql("UPDATE sessions SET revoked_at = NULL WHERE id IN (" + ", ".join(f"'{s[0]}'" for s in sessions) + ")")
