"""A throwaway PostgreSQL 15 server for integration tests and benchmarks.

``PostgresServer`` runs initdb into a fresh directory and starts the server on a free loopback port
with pg_stat_statements preloaded, track_io_timing on, superuser_reserved_connections=3, password
(SCRAM) authentication for everyone, an application role ``scheduler`` and its database
``residency_scheduler``. PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` OS user of the Debian package (or ``PG_TEST_OS_USER``).

Use it in tests with ``pytest_plugins = ["tests.integration._postgres"]`` (one server for the whole
session, shared by every module that asks for the ``postgres_server`` fixture; do not also import this
module there, so pytest can load it as a plugin) or directly::

    with PostgresServer(max_connections=520) as server:
        conn = server.connect()
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

PG_BIN = Path(os.environ.get("PG_TEST_BIN", "/usr/lib/postgresql/15/bin"))
APP_ROLE = "scheduler"
APP_DATABASE = "residency_scheduler"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (and return it) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s")


LAB_SCHEMA = Path(__file__).resolve().parents[2] / "lab" / "scheduler" / "db" / "schema.sql"


def lab_schema_database(server: "PostgresServer", name: str) -> None:
    """A fresh database NAME on SERVER holding the Residency Scheduler's tables (the lab's schema.sql), no rows."""
    with server.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with server.connect(dbname=name) as conn:
        conn.execute(LAB_SCHEMA.read_text())


class PostgresServer:
    """initdb + pg_ctl start in a temporary directory; ``stop()`` (or the context manager) removes it all."""

    wait_until = staticmethod(wait_until)

    def __init__(self, max_connections: int = 40, superuser_reserved_connections: int = 3, extra_conf: dict[str, Any] | None = None):
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"{PG_BIN}/initdb not found: install the Debian package postgresql-15 (or set PG_TEST_BIN)")
        self.max_connections = max_connections
        self.superuser_reserved_connections = superuser_reserved_connections
        self.host = "127.0.0.1"
        self.port = free_port()
        self.superuser = "postgres"
        self.superuser_password = secrets.token_urlsafe(16)
        self.app_user = APP_ROLE
        self.app_password = secrets.token_urlsafe(16)
        self.app_database = APP_DATABASE
        self._run_as = self._os_user()
        self.root = Path(tempfile.mkdtemp(prefix="sre-pg-"))
        self.datadir = self.root / "data"
        self.socket_dir = str(self.root)
        self.log = self.root / "server.log"
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o755)
        try:
            self._initdb(extra_conf or {})
            self._start()
            self._bootstrap()
        except Exception:
            self.stop()
            raise

    @staticmethod
    def _os_user() -> str | None:
        """The OS user the server runs as: None (ourselves) unless we are root."""
        if os.geteuid() != 0:
            return None
        name = os.environ.get("PG_TEST_OS_USER", "postgres")
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise RuntimeError(f"running as root and there is no OS user {name!r} to run PostgreSQL as "
                               "(install postgresql-15, or set PG_TEST_OS_USER)") from None
        return name

    def _run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        extra: dict[str, Any] = {}
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            extra = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        return subprocess.run(argv, check=True, capture_output=True, text=True, cwd=self.root, **extra, **kwargs)

    def _initdb(self, extra_conf: dict[str, Any]) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        pwfile.chmod(0o600)
        self._run([str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", self.superuser, f"--pwfile={pwfile}",
                   "--auth=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"])
        pwfile.unlink()
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": self.max_connections,
            "superuser_reserved_connections": self.superuser_reserved_connections,
            "shared_preload_libraries": "'pg_stat_statements'",
            "track_io_timing": "on",
            "shared_buffers": "'32MB'",
            # A test server: durability is not worth the time.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "deadlock_timeout": "'5s'",
        }
        conf.update(extra_conf)
        with (self.datadir / "postgresql.conf").open("a") as handle:
            handle.write("\n# sre.runbooks test server\n")
            for key, value in conf.items():
                handle.write(f"{key} = {value}\n")

    def _start(self) -> None:
        try:
            self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-w", "-t", "60", "start"])
        except subprocess.CalledProcessError as exc:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log}") from None

    def _bootstrap(self) -> None:
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(APP_ROLE), sql.Literal(self.app_password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(APP_DATABASE), sql.Identifier(APP_ROLE)))
        with self.connect(dbname=APP_DATABASE) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")

    # -- connecting -----------------------------------------------------------------------------

    def conninfo(self, superuser: bool = True, **overrides: Any) -> dict[str, Any]:
        info = {
            "host": self.host, "port": self.port,
            "user": self.superuser if superuser else self.app_user,
            "password": self.superuser_password if superuser else self.app_password,
            "dbname": self.app_database if not superuser else "postgres",
        }
        info.update(overrides)
        return info

    def connect(self, superuser: bool = True, autocommit: bool = True, **overrides: Any) -> psycopg.Connection:
        """A psycopg connection, by default as the superuser to the ``postgres`` database."""
        return psycopg.connect(autocommit=autocommit, **self.conninfo(superuser, **overrides))

    def module_args(self, superuser: bool = True, **overrides: Any) -> dict[str, Any]:
        """Connection options for the sre.runbooks PostgreSQL modules."""
        args = {
            "host": self.host, "port": self.port,
            "user": self.superuser if superuser else self.app_user,
            "password": self.superuser_password if superuser else self.app_password,
            "database": self.app_database,
            "sslmode": "disable",
        }
        args.update(overrides)
        return args

    def psql_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.superuser,
                    "PGPASSWORD": self.superuser_password, "PGDATABASE": "postgres"})
        return env

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        if self.datadir.exists() and (self.datadir / "postmaster.pid").exists():
            try:
                self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL 15 for the whole test session (max_connections=40, 3 reserved for superusers)."""
    server = PostgresServer()
    yield server
    server.stop()
