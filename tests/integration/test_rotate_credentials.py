"""rotate_credentials for PostgreSQL passwords against a real PostgreSQL 15 and a consumer that logs in with the file's credentials."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from ansible_collections.sre.runbooks.plugins.modules import rotate_credentials
from tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]

TEMPLATE = "postgresql://{user}:{secret}@127.0.0.1:%d/residency_scheduler"


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def login_works(server, user, password) -> bool:
    try:
        with psycopg.connect(host=server.host, port=server.port, user=user, password=password, dbname=server.app_database) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


class Consumer:
    """The app stand-in: /health logs in with the DATABASE_URL of its env file as it was at the last reload."""

    def __init__(self, env_file: Path):
        self.env_file = env_file
        self.reloads = 0
        self.url = None
        self.reload()
        consumer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                status = 503
                if self.path == "/health":
                    parts = urlsplit(consumer.url)
                    try:
                        with psycopg.connect(host=parts.hostname, port=parts.port, user=parts.username, password=parts.password,
                                             dbname=parts.path.lstrip("/"), connect_timeout=3) as conn:
                            conn.execute("SELECT 1")
                        status = 200
                    except psycopg.OperationalError:
                        status = 503
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reload(self):
        self.url = read_env(self.env_file)["DATABASE_URL"]
        self.reloads += 1

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def pair(postgres_server, tmp_path):
    """Roles app_a / app_b (members of scheduler), the consumer's env file naming app_a, and the consumer."""
    passwords = {"app_a": "old-a-password-123456", "app_b": "old-b-password-123456"}
    with postgres_server.connect() as conn:
        for role, password in passwords.items():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE scheduler").format(sql.Identifier(role), sql.Literal(password)))
    env = tmp_path / "backend.env"
    url = (TEMPLATE % postgres_server.port).format(user="app_a", secret=passwords["app_a"])
    env.write_text(f"# backend\nLOG_LEVEL=info\nDATABASE_URL={url}\n")
    env.chmod(0o640)
    consumer = Consumer(env)
    yield {"env": env, "passwords": passwords, "consumer": consumer}
    consumer.close()


def verifiers(server):
    with server.connect() as conn:
        return dict(conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('app_a', 'app_b', 'scheduler')").fetchall())


def rotate(monkeypatch, server, pair, check=False, **args):
    full = server.module_args(database=server.app_database)
    full.update({"kind": "postgres_password", "role": "app_a", "alternate_role": "app_b", "secret_file": str(pair["env"]),
                 "key": "DATABASE_URL", "value_template": TEMPLATE % server.port, "settle": 0, "verify_timeout": 3,
                 "verify_url": pair["consumer"].base + "/health", "_ansible_check_mode": check, "_ansible_diff": True})
    full.update(args)
    return run_module(monkeypatch, rotate_credentials.main, full)


def reload_hook(monkeypatch, pair):
    """consumer_command runs a real process; the in-test consumer re-reads its file when that process ran (a marker file)."""
    from ansible_collections.sre.runbooks.plugins.module_utils import _rotate
    real = _rotate.run_consumers

    def run_and_reload(argvs, settle):
        real(argvs, settle)
        pair["consumer"].reload()
    monkeypatch.setattr(_rotate, "run_consumers", run_and_reload)


def test_alternating_rotation_check_mode_then_real_then_idempotent(monkeypatch, postgres_server, pair, tmp_path):
    reload_hook(monkeypatch, pair)
    marker = tmp_path / "reloaded"
    before_file, before_roles = pair["env"].read_bytes(), verifiers(postgres_server)
    preview, failed = rotate(monkeypatch, postgres_server, pair, check=True, consumer_command=["touch", str(marker)], rotation_id="INC-1")
    assert not failed, preview
    assert preview["changed"] is True and preview["role"] == "app_b" and preview["previous_role"] == "app_a"
    assert "role app_a" in preview["diff"]["before"] and "role app_b" in preview["diff"]["after"]
    assert pair["env"].read_bytes() == before_file and verifiers(postgres_server) == before_roles and not marker.exists()

    result, failed = rotate(monkeypatch, postgres_server, pair, consumer_command=["touch", str(marker)], rotation_id="INC-1",
                            mode="0600")
    assert not failed, result
    assert result["changed"] is True and result["role"] == "app_b" and result["retired_old"] is True
    assert marker.exists() and pair["consumer"].reloads >= 2
    env = read_env(pair["env"])
    assert env["LOG_LEVEL"] == "info" and pair["env"].read_text().startswith("# backend\n")
    new_url = urlsplit(env["DATABASE_URL"])
    assert new_url.username == "app_b" and login_works(postgres_server, "app_b", new_url.password)
    assert not login_works(postgres_server, "app_a", pair["passwords"]["app_a"])  # retired after verification
    assert not login_works(postgres_server, "app_b", pair["passwords"]["app_b"])
    assert oct(pair["env"].stat().st_mode & 0o777) == "0o600"
    assert result["queries"] == ["ALTER ROLE app_b PASSWORD '********'", "ALTER ROLE app_a PASSWORD '********'"]
    assert new_url.password not in repr(result)
    with postgres_server.connect() as conn:  # only a SCRAM verifier was ever sent
        assert conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'app_b'").fetchone()[0].startswith("SCRAM-SHA-256$")

    after_file, after_roles = pair["env"].read_bytes(), verifiers(postgres_server)
    again, failed = rotate(monkeypatch, postgres_server, pair, consumer_command=["touch", str(marker)], rotation_id="INC-1")
    assert not failed and again["changed"] is False
    assert pair["env"].read_bytes() == after_file and verifiers(postgres_server) == after_roles

    # The next incident rotates back to app_a.
    result, failed = rotate(monkeypatch, postgres_server, pair, consumer_command=["touch", str(marker)], rotation_id="INC-2")
    assert not failed and result["role"] == "app_a"
    assert not login_works(postgres_server, "app_b", new_url.password)


def test_failed_verification_rolls_back_and_old_password_still_works(monkeypatch, postgres_server, pair):
    reload_hook(monkeypatch, pair)
    before_file, before_roles = pair["env"].read_bytes(), verifiers(postgres_server)
    result, failed = rotate(monkeypatch, postgres_server, pair, consumer_command=["true"],
                            verify_url=pair["consumer"].base + "/broken", verify_timeout=0.5)
    assert failed, result
    assert result["rolled_back"] is True and result["old_secret_works"] is True and result["option"] == "verify_url"
    assert "expected HTTP 200" in result["msg"]
    assert pair["env"].read_bytes() == before_file
    assert verifiers(postgres_server) == before_roles  # app_b's verifier put back too
    assert login_works(postgres_server, "app_a", pair["passwords"]["app_a"])
    assert login_works(postgres_server, "app_b", pair["passwords"]["app_b"])
    assert any(step.startswith("rolled back: put back") for step in result["steps"])
    assert pair["consumer"].url.startswith("postgresql://app_a:")  # consumers reloaded with the old file


def test_single_strategy_and_its_rollback(monkeypatch, postgres_server, pair):
    reload_hook(monkeypatch, pair)
    failed_run, failed = rotate(monkeypatch, postgres_server, pair, strategy="single", alternate_role=None, consumer_command=["true"],
                                verify_url=pair["consumer"].base + "/broken", verify_timeout=0.3)
    assert failed and failed_run["old_secret_works"] is True
    assert login_works(postgres_server, "app_a", pair["passwords"]["app_a"])
    result, failed = rotate(monkeypatch, postgres_server, pair, strategy="single", alternate_role=None, consumer_command=["true"])
    assert not failed, result
    password = urlsplit(read_env(pair["env"])["DATABASE_URL"]).password
    assert login_works(postgres_server, "app_a", password) and not login_works(postgres_server, "app_a", pair["passwords"]["app_a"])
    assert login_works(postgres_server, "app_b", pair["passwords"]["app_b"])  # untouched


@pytest.mark.parametrize(("args", "message"), [
    ({"alternate_role": "app_a"}, "alternate_role:"),
    ({"value_template": None}, "user_key:"),
    ({"role": None}, "role:"),
    ({"length": 8}, "length:"),
    ({"mode": "rw"}, "mode:"),
    ({"alternate_role": "app_c", "role": "app_x"}, "role: the consumer file names role 'app_a'"),
])
def test_guard_rails_on_options(monkeypatch, postgres_server, pair, args, message):
    before = pair["env"].read_bytes()
    result, failed = rotate(monkeypatch, postgres_server, pair, **args)
    assert failed and result["msg"].startswith(message), result
    assert pair["env"].read_bytes() == before
