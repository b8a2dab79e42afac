"""The pool_tuning role against a real PostgreSQL 15 (community.postgresql.postgresql_set) and a real Redis (redis_config),
run by ansible-playbook: check mode changes nothing, --diff, second run unchanged, a refused setting rolls back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.modules import redis_config
from tests.unit.plugins.modules.utils import run_module

from .conftest import free_port, postgres_helpers as _pg, wait_until

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]


REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pg():
    with _pg().PostgresServer(max_connections=20) as server:
        yield server


@pytest.fixture
def redis(tmp_path):
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {tmp_path}\nmaxmemory-policy noeviction\n")
    proc = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False).stdout.strip() == "PONG",
               what="redis up")
    yield {"port": port, "conf": conf}
    proc.terminate()
    proc.wait(timeout=10)


PLAY = """
- name: Tune
  hosts: localhost
  gather_facts: false
  tasks:
    - name: PostgreSQL timeouts
      ansible.builtin.include_role:
        name: sre.runbooks.pool_tuning
        tasks_from: postgres
    - name: Redis memory
      ansible.builtin.include_role:
        name: sre.runbooks.pool_tuning
        tasks_from: redis
"""


def playbook(tmp_path, pg, redis, *flags):
    path = tmp_path / "tune.yml"
    path.write_text(PLAY)
    extra = [f"pool_tuning_pg_login_host={pg.host}", f"pool_tuning_pg_login_port={pg.port}",
             f"pool_tuning_pg_login_password={pg.superuser_password}", f"pool_tuning_redis_port={redis['port']}"]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path), "--diff", *flags]
    for item in extra:
        argv += ["-e", item]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300, check=False)


def pg_settings(pg):
    with pg.connect() as conn:
        return dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN"
                                 " ('idle_in_transaction_session_timeout', 'statement_timeout')").fetchall())


def redis_get(redis, name):
    out = subprocess.run(["redis-cli", "-p", str(redis["port"]), "CONFIG", "GET", name], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


def recap(proc):
    line = [line for line in proc.stdout.splitlines() if line.startswith("localhost")][-1]
    return dict(part.split("=") for part in line.split(":", 1)[1].split())


def test_check_mode_then_apply_then_unchanged(tmp_path, pg, redis):
    before_pg, before_conf = pg_settings(pg), redis["conf"].read_text()
    check = playbook(tmp_path, pg, redis, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert recap(check)["changed"] == "2"  # the postgresql_set loop and redis_config
    assert pg_settings(pg) == before_pg and redis_get(redis, "maxmemory-policy") == "noeviction"
    assert redis["conf"].read_text() == before_conf
    assert "+maxmemory-policy allkeys-lru" in check.stdout

    real = playbook(tmp_path, pg, redis)
    assert real.returncode == 0, real.stdout + real.stderr
    assert pg_settings(pg) == {"idle_in_transaction_session_timeout": "60000", "statement_timeout": "30000"}
    assert redis_get(redis, "maxmemory") == str(256 * 1024 * 1024) and redis_get(redis, "maxmemory-policy") == "allkeys-lru"
    assert "maxmemory-policy allkeys-lru" in redis["conf"].read_text()  # CONFIG REWRITE persisted it

    again = playbook(tmp_path, pg, redis)
    assert again.returncode == 0 and recap(again)["changed"] == "0", again.stdout


def test_refused_setting_puts_the_others_back(monkeypatch, redis):
    result, failed = run_module(monkeypatch, redis_config.main, {"port": redis["port"],
                                                                 "settings": {"maxmemory-policy": "allkeys-lru", "maxmemory": "lots"}})
    assert failed and "set back" in result["msg"]
    assert redis_get(redis, "maxmemory-policy") == "noeviction"
    result, failed = run_module(monkeypatch, redis_config.main, {"port": redis["port"], "settings": {"no-such-setting": 1}})
    assert failed and "no configuration parameter" in result["msg"]
