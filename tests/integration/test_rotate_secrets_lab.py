"""rotate_credentials for the JWT secret and API keys of the real Heart Disease stand-in API (SIGHUP reload),
and the secret-leak test: ansible-playbook -vvv --diff with the incident record, no secret in any output or file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from psycopg import sql

from ansible_collections.sre.runbooks.plugins.module_utils._rotate import jwt_hs256
from ansible_collections.sre.runbooks.plugins.modules import rotate_credentials
from lab.heart_disease.common import Home, key_id, load_config
from tests.unit.plugins.modules.utils import run_module

from ._redis import RedisServer
from .conftest import free_port, wait_http
from .test_heart_disease_lab import Lab

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]
REPO_ROOT = Path(__file__).resolve().parents[2]


class PatientLab(Lab):
    """The Heart Disease installation of test_heart_disease_lab, with room for a machine busy with other work: the build and
    the API's start are waited for (up to 5 minutes) rather than timed; a fast machine does not wait any longer."""

    def __init__(self, root: Path) -> None:  # pylint: disable=super-init-not-called
        self.home = Home.of(root / "home")
        self.api_port, self.worker_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.worker_url = f"http://127.0.0.1:{self.worker_port}"
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.procs: dict[str, subprocess.Popen] = {}
        subprocess.run([sys.executable, "-m", "lab.heart_disease.build", "--home", str(self.home.root), "--api-port", str(self.api_port),
                        "--worker-port", str(self.worker_port)], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True,
                       timeout=300, check=True)
        self.api_key, self.partner_key = load_config(self.home)["api"]["auth"]["api_keys"][:2]

    def start(self, service: str) -> subprocess.Popen:
        log = (self.home.root / f"{service}.stderr").open("ab")  # pylint: disable=consider-using-with
        proc = subprocess.Popen([sys.executable, "-m", f"lab.heart_disease.{service}", "--home", str(self.home.root),
                                 "--port", str(self.api_port)], cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log)
        self.procs[service] = proc
        wait_http(f"{self.api_url}/health", timeout=300, proc=proc)
        return proc


@pytest.fixture(scope="module")
def hd(tmp_path_factory):
    lab = PatientLab(tmp_path_factory.mktemp("hd_rotate"))
    try:
        lab.start("api")
        yield lab
    finally:
        lab.stop()


def auth(lab):
    return yaml.safe_load(lab.home.config.read_text())["api"]["auth"]


def info_status(lab, **headers) -> int:
    return requests.get(f"{lab.api_url}/models/info", headers=headers, timeout=10).status_code


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def rotate(monkeypatch, lab, check=False, **args):
    full = {"secret_file": str(lab.home.config), "format": "yaml", "verify_url": f"{lab.api_url}/models/info",
            "consumer_command": ["kill", "-HUP", str(lab.procs["api"].pid)], "settle": 0.3, "verify_timeout": 5,
            "_ansible_check_mode": check, "_ansible_diff": True}
    full.update(args)
    return run_module(monkeypatch, rotate_credentials.main, full)


def jwt_args(lab, **extra):
    return {"kind": "jwt_secret", "key": "api.auth.secret_key", "previous_key": "api.auth.previous_secret_keys",
            "jwt_claims": {"sub": key_id(lab.api_key)}, **extra}


def test_jwt_rotation_keeps_issued_tokens_valid(monkeypatch, hd):
    old_secret = auth(hd)["secret_key"]
    old_token = requests.post(f"{hd.api_url}/auth/token", headers={"X-API-Key": hd.api_key}, timeout=10).json()["access_token"]
    before = hd.home.config.read_bytes()
    preview, failed = rotate(monkeypatch, hd, check=True, **jwt_args(hd))
    assert not failed and preview["changed"] is True and hd.home.config.read_bytes() == before

    result, failed = rotate(monkeypatch, hd, **jwt_args(hd, rotation_id="INC-7"))
    assert not failed, result
    new_auth = auth(hd)
    assert new_auth["secret_key"] != old_secret and new_auth["previous_secret_keys"] == [old_secret]
    assert new_auth["api_keys"] == [hd.api_key, hd.partner_key]  # the rest of the config is kept
    assert oct(hd.home.config.stat().st_mode & 0o777) == "0o600"
    assert info_status(hd, **bearer(old_token)) == 200  # issued before the rotation: still valid
    assert info_status(hd, **bearer(jwt_hs256(new_auth["secret_key"], {"sub": key_id(hd.api_key)}))) == 200
    assert result["secret_fingerprint"] and new_auth["secret_key"] not in json.dumps(result)
    assert old_secret not in json.dumps(result)

    again, failed = rotate(monkeypatch, hd, **jwt_args(hd, rotation_id="INC-7"))
    assert not failed and again["changed"] is False and auth(hd) == new_auth


def test_jwt_rotation_not_picked_up_rolls_back(monkeypatch, hd):
    before, old_secret = hd.home.config.read_bytes(), auth(hd)["secret_key"]
    result, failed = rotate(monkeypatch, hd, consumer_command=["true"], verify_timeout=0.5, **jwt_args(hd))  # no reload
    assert failed and result["rolled_back"] is True and result["old_secret_works"] is True
    assert hd.home.config.read_bytes() == before
    os.kill(hd.procs["api"].pid, signal.SIGHUP)
    time.sleep(0.3)
    assert info_status(hd, **bearer(jwt_hs256(old_secret, {"sub": key_id(hd.api_key)}))) == 200


def test_api_key_rotation_retires_the_leaked_key(monkeypatch, hd, tmp_path):
    leaked = hd.partner_key
    out = tmp_path / "partner.key"
    result, failed = rotate(monkeypatch, hd, kind="api_key", key="api.auth.api_keys", old_secret=leaked, prefix="hdk_",
                            new_secret_file=str(out))
    assert not failed, result
    new_key = out.read_text().strip()
    assert new_key.startswith("hdk_") and oct(out.stat().st_mode & 0o777) == "0o600"
    assert auth(hd)["api_keys"] == [hd.api_key, new_key]
    assert info_status(hd, **{"X-API-Key": new_key}) == 200
    assert info_status(hd, **{"X-API-Key": leaked}) == 401
    assert info_status(hd, **{"X-API-Key": hd.api_key}) == 200
    assert result["retired_old"] is True and new_key not in json.dumps(result) and leaked not in json.dumps(result)
    hd.partner_key = new_key

    missing, failed = rotate(monkeypatch, hd, kind="api_key", key="api.auth.api_keys", old_secret="hdk_not-configured")
    assert failed and missing["msg"].startswith("old_secret:")


PLAYBOOK = """
- name: Rotate every credential kind with the incident record on
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Open the incident
      sre.runbooks.incident:
        state: open
        incident_dir: "{{ incident_dir }}"
        alert_name: LeakedCredential
        remediate: true
      register: opened

    - name: Rotate the JWT secret
      sre.runbooks.rotate_credentials:
        kind: jwt_secret
        secret_file: "{{ config }}"
        format: yaml
        key: api.auth.secret_key
        previous_key: api.auth.previous_secret_keys
        consumer_command: [kill, -HUP, "{{ api_pid }}"]
        settle: 0.3
        verify_url: "{{ api_url }}/models/info"
        jwt_claims: {sub: "{{ key_id }}"}
      register: jwt

    - name: Replace the partner API key
      sre.runbooks.rotate_credentials:
        kind: api_key
        secret_file: "{{ config }}"
        format: yaml
        key: api.auth.api_keys
        old_secret: "{{ partner_key }}"
        new_secret_file: "{{ new_key_file }}"
        consumer_command: [kill, -HUP, "{{ api_pid }}"]
        settle: 0.3
        verify_url: "{{ api_url }}/models/info"
      register: apikey

    - name: Rotate the database password
      sre.runbooks.rotate_credentials:
        kind: postgres_password
        host: 127.0.0.1
        port: "{{ pg_port }}"
        user: postgres
        password: "{{ pg_password }}"
        database: residency_scheduler
        sslmode: disable
        strategy: single
        role: leak_app
        secret_file: "{{ env_file }}"
        key: DB_PASSWORD
      register: dbpw

    - name: Terminate a (non-existent) leaking application's sessions with the same admin credentials
      sre.runbooks.pg_terminate:
        host: 127.0.0.1
        port: "{{ pg_port }}"
        user: postgres
        password: "{{ pg_password }}"
        database: residency_scheduler
        sslmode: disable
        action: terminate
        application_name_filter: [leaky-app]
      register: terminated

    - name: Force a password reset and revoke the sessions of the leaking account
      sre.runbooks.app_account:
        host: 127.0.0.1
        port: "{{ pg_port }}"
        user: postgres
        password: "{{ pg_password }}"
        database: leak_accounts
        sslmode: disable
        accounts: [leaky]
        force_password_reset: true
        reason: LeakedCredential
      register: account

    - name: Cap Redis memory on a password-protected Redis
      sre.runbooks.redis_config:
        host: 127.0.0.1
        port: "{{ redis_port }}"
        password: "{{ redis_password }}"
        rewrite: false
        settings:
          maxmemory: 48mb
      register: redis

    - name: A failing rotation (rolled back) must not leak either
      sre.runbooks.rotate_credentials:
        kind: jwt_secret
        secret_file: "{{ config }}"
        format: yaml
        key: api.auth.secret_key
        consumer_command: ["true"]
        settle: 0
        verify_timeout: 0.5
        verify_url: "{{ api_url }}/models/info"
        jwt_claims: {sub: "{{ key_id }}"}
      register: failing
      ignore_errors: true

    - name: Record the actions in the incident
      sre.runbooks.incident:
        path: "{{ opened.path }}"
        actions:
          - {action: rotate jwt, host: localhost, result: "{{ jwt }}"}
          - {action: rotate api key, host: localhost, result: "{{ apikey }}"}
          - {action: rotate db password, host: localhost, result: "{{ dbpw }}"}
          - {action: failed rotation, host: localhost, result: "{{ failing }}"}
          - {action: terminate sessions, host: localhost, result: "{{ terminated }}"}
          - {action: force password reset, host: localhost, result: "{{ account }}"}
          - {action: redis maxmemory, host: localhost, result: "{{ redis }}"}
        events:
          - {event: rotated, detail: "{{ jwt.msg }} / {{ apikey.msg }} / {{ dbpw.msg }}"}
"""


def test_no_secret_in_any_output_or_file(hd, postgres_server, tmp_path):
    with postgres_server.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS leak_app")
        conn.execute(sql.SQL("CREATE ROLE leak_app LOGIN PASSWORD {}").format(sql.Literal("old-leak-app-password-1")))
        conn.execute("DROP DATABASE IF EXISTS leak_accounts WITH (FORCE)")
        conn.execute("CREATE DATABASE leak_accounts")
    account_hash = "$argon2id$v=19$leaky-account-password-hash-7f3a"
    with postgres_server.connect(dbname="leak_accounts") as conn:  # the app's schema: users, sessions, audit_log
        conn.execute((REPO_ROOT / "lab" / "scheduler" / "db" / "schema.sql").read_text())
        conn.execute("INSERT INTO users (username, email, hashed_password, password_salt, role) VALUES ('leaky', 'l@example.org', %s,"
                     " 'salt-9c1d', 'resident')", (account_hash,))
        session_ids = [str(r[0]) for r in conn.execute(
            "INSERT INTO sessions (id, user_id, expires_at) SELECT gen_random_uuid(), id, now() + interval '1 hour' FROM users"
            " RETURNING id").fetchall()]
    redis_password = "redis-leak-test-password-4e1b"
    redis = RedisServer(tmp_path, "--requirepass", redis_password)
    env_file = tmp_path / "app.env"
    env_file.write_text("DB_PASSWORD=old-leak-app-password-1\n")
    old = auth(hd)
    secrets_before = [old["secret_key"], *old["previous_secret_keys"], *old["api_keys"], "old-leak-app-password-1",
                      postgres_server.superuser_password, account_hash, "salt-9c1d", *session_ids, redis_password]
    playbook = tmp_path / "rotate.yml"
    playbook.write_text(PLAYBOOK)
    incident_dir = tmp_path / "incidents"
    log_file = tmp_path / "ansible.log"
    extra = {"incident_dir": str(incident_dir), "config": str(hd.home.config), "api_pid": hd.procs["api"].pid,
             "api_url": hd.api_url, "key_id": key_id(hd.api_key), "partner_key": hd.partner_key,
             "new_key_file": str(tmp_path / "new.key"), "pg_port": postgres_server.port,
             "pg_password": postgres_server.superuser_password, "env_file": str(env_file), "redis_port": redis.port,
             "redis_password": redis_password}
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_LOG_PATH=str(log_file),
               ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_KEEP_REMOTE_FILES="0",
               ANSIBLE_CALLBACKS_ENABLED="sre.runbooks.incident_timeline")  # the incident timeline on
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=tmp_path, delete=False) as handle:
        json.dump(extra, handle)
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-vvv", "--diff", "-i", "localhost,", "-c", "local",
                               str(playbook), "-e", f"@{handle.name}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
    finally:
        redis.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    new = auth(hd)
    new_db = env_file.read_text().split("=", 1)[1].strip()
    secrets_after = [new["secret_key"], *new["api_keys"], new_db, (tmp_path / "new.key").read_text().strip()]
    assert new["secret_key"] != old["secret_key"] and new_db != "old-leak-app-password-1"
    # Everything the run left that is not a secret file by design.
    texts = {"stdout": proc.stdout, "stderr": proc.stderr, "ansible.log": log_file.read_text()}
    for path in incident_dir.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    for path in tmp_path.glob("*.rotation.json"):
        texts[str(path)] = path.read_text()
    for path in (Path(str(hd.home.config) + ".rotation.json"), Path(str(env_file) + ".rotation.json")):
        if path.exists():
            texts[str(path)] = path.read_text()
    assert "incident.json" in " ".join(texts) and "rotate_credentials" in proc.stdout
    timeline = next(text for name, text in texts.items() if name.endswith("timeline.jsonl"))
    assert "Rotate the JWT secret" in timeline and "Replace the partner API key" in timeline  # the timeline recorded the tasks
    assert "secret_fingerprint" in texts["stdout"] and "\"own_pid\"" in texts["stdout"]
    assert "Force a password reset" in timeline and "Cap Redis memory" in timeline
    assert "50331648" in proc.stdout  # redis_config set maxmemory (48mb) through the password
    with postgres_server.connect(dbname="leak_accounts") as conn:  # the account task really ran
        assert conn.execute("SELECT count(*) FROM sessions WHERE revoked_at IS NULL").fetchone()[0] == 0
    for secret in set(secrets_before + secrets_after):
        for name, text in texts.items():
            assert secret not in text, f"a secret ({secret[:4]}…) leaked into {name}"
    hd.partner_key = new["api_keys"][1]
