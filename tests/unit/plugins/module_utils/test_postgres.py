"""The shared PostgreSQL layer: options, connection keywords and error messages (no server needed)."""

from __future__ import annotations

import psycopg
import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._postgres import (
    DEFAULT_APPLICATION_NAME,
    connect,
    connect_error,
    connection_kwargs,
    parse_seconds,
    postgres_argument_spec,
    query_error,
    truncate,
)


def params(**overrides):
    values = {name: spec.get("default") for name, spec in postgres_argument_spec().items()}
    values.update(overrides)
    return values


def test_argument_spec_defaults_and_secret():
    spec = postgres_argument_spec()
    assert spec["password"]["no_log"] is True
    assert spec["application_name"]["default"] == DEFAULT_APPLICATION_NAME == "sre.runbooks"
    assert spec["sslmode"]["choices"][-1] == "verify-full"
    assert {"login_host", "login_user", "login_password", "login_port", "login_db"} <= {
        alias for item in spec.values() for alias in item.get("aliases", [])}


@pytest.mark.parametrize("value, expected", [(5, 5.0), ("5", 5.0), ("0.25", 0.25), ("90s", 90.0), ("5m", 300.0), ("500ms", 0.5), (0, 0.0)])
def test_parse_seconds(value, expected):
    assert parse_seconds(value, "threshold") == expected


@pytest.mark.parametrize("value", ["soon", "-1", -3, True, "5 parsecs", "nan", "inf", float("inf")])
def test_parse_seconds_rejects_and_names_option(value):
    with pytest.raises(ValueError, match=r"^threshold: "):
        parse_seconds(value, "threshold")


def test_connection_kwargs_socket_wins_over_host_and_no_empty_password():
    kwargs = connection_kwargs(params(host="db.example.org", login_unix_socket="/run/postgresql", database="residency_scheduler"))
    assert kwargs["host"] == "/run/postgresql"
    assert kwargs["dbname"] == "residency_scheduler"
    assert "password" not in kwargs
    assert kwargs["application_name"] == "sre.runbooks"
    tcp = connection_kwargs(params(host="db.example.org", password="s3cret", ca_cert="/etc/ca.pem", sslmode="verify-full"))
    assert tcp["host"] == "db.example.org" and tcp["password"] == "s3cret" and tcp["sslrootcert"] == "/etc/ca.pem"
    assert "host" not in connection_kwargs(params())  # libpq defaults


@pytest.mark.parametrize("overrides, message", [
    ({"port": 0}, "port: must be between 1 and 65535"),
    ({"port": 70000}, "port: must be between 1 and 65535"),
    ({"connect_timeout": 0}, "connect_timeout: must be at least 1 second"),
])
def test_connection_kwargs_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        connection_kwargs(params(**overrides))


def test_connect_rejects_zero_query_timeout_before_connecting():
    with pytest.raises(ValueError, match="^query_timeout: must be greater than 0"):
        connect(params(query_timeout="0"))


SERVER = 'connection failed: connection to server at "10.1.2.3", port 5432 failed: '


@pytest.mark.parametrize("text, option, start", [
    (SERVER + 'FATAL:  password authentication failed for user "scheduler"', "password", "password: authentication failed for user 'app'"),
    (SERVER + "fe_sendauth: no password supplied", "password", "password: "),
    (SERVER + 'FATAL:  role "app" does not exist', "user", "user: role 'app' does not exist"),
    (SERVER + 'FATAL:  database "residency" does not exist', "database", "database: database 'residency_scheduler' does not exist"),
    (SERVER + "FATAL:  sorry, too many clients already", "user", "user: the server has no free connection slots"),
    (SERVER + "FATAL:  remaining connection slots are reserved for non-replication superuser connections", "user",
     "user: the server has no free connection slots"),
    (SERVER + 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "app", database "x", SSL off', "host", "host: the server's pg_hba.conf"),
    (SERVER + "server does not support SSL, but SSL was required", "sslmode", "sslmode: TLS negotiation failed with sslmode=prefer"),
    (SERVER + "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?", "host",
     "host: cannot reach PostgreSQL at db.example.org:5432"),
    ('connection failed: could not translate host name "nowhere" to address', "host", "host: cannot reach"),
    ("connection failed: timeout expired", "host", "host: cannot reach"),
    ('connection failed: connection to server on socket "/tmp/.s.PGSQL.5432" failed: No such file or directory', "login_unix_socket",
     "login_unix_socket: no PostgreSQL socket"),
    ("connection failed: something nobody has seen before", "host", "host: cannot connect to PostgreSQL at db.example.org:5432"),
])
def test_connect_errors_name_the_option(text, option, start):
    error = connect_error(psycopg.OperationalError(text), params(host="db.example.org", user="app", database="residency_scheduler"))
    assert error.option == option
    assert str(error).startswith(start), str(error)
    assert " ".join(text.split()) in str(error)  # the server's words are kept, on one line


def test_connect_error_never_shows_the_password():
    error = connect_error(psycopg.OperationalError("connection failed: weird thing near 'hunter2-pw'"), params(password="hunter2-pw"))
    assert "hunter2-pw" not in str(error) and "********" in str(error)


@pytest.mark.parametrize("exc, option, start", [
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), "query_timeout", "query_timeout: reading x was cancelled"),
    (psycopg.errors.InsufficientPrivilege("permission denied for view pg_stat_statements"), "user", "user: permission denied while reading x"),
    (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), None, "reading x could not get a lock"),
    (psycopg.OperationalError("server closed the connection unexpectedly"), "host", "host: lost the connection"),
    (psycopg.errors.UndefinedTable('relation "t" does not exist'), None, "reading x failed: relation"),
])
def test_query_errors(exc, option, start):
    error = query_error(exc, "reading x", params())
    assert error.option == option
    assert str(error).startswith(start), str(error)


@pytest.mark.parametrize("text, length, expected", [
    ("SELECT 1", 0, "SELECT 1"), ("SELECT 1", 8, "SELECT 1"), ("SELECT 123", 8, "SELECT …"), (None, 5, None),
])
def test_truncate(text, length, expected):
    assert truncate(text, length) == expected
