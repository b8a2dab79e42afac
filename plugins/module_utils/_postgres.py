# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL connection layer shared by every sre.runbooks module that talks to PostgreSQL.

One argument spec (matching the ``sre.runbooks.postgres`` doc fragment), one way to connect
(psycopg 3, autocommit, a statement_timeout and lock_timeout so a diagnostic never hangs on a
sick server, read-only by default), and one translation of psycopg's errors into messages that
name the option to fix. ``PostgresModule`` bundles that for modules the way ``AnsibleAWSModule``
does for AWS: common options, the psycopg dependency check, the connection and error reporting.
"""

from __future__ import annotations

import math
import re
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import psycopg
    from psycopg.rows import dict_row
except ImportError:  # the module reports it with missing_required_lib
    psycopg = None
    dict_row = None
    PSYCOPG_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

DEFAULT_APPLICATION_NAME = "sre.runbooks"
# Same grammar as _prometheus.parse_duration, kept here so PostgreSQL modules do not import the HTTP
# stack (ansible.module_utils.urls costs ~60 ms per module run, measured).
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PostgresError(Exception):
    """A PostgreSQL problem, already phrased for a person; ``option`` is the module option to look at."""

    def __init__(self, message: str, option: str | None = None, sqlstate: str | None = None):
        super().__init__(message)
        self.option = option
        self.sqlstate = sqlstate


def postgres_argument_spec() -> dict[str, Any]:
    """The options of the ``sre.runbooks.postgres`` doc fragment, for ``argument_spec``."""
    return {
        "host": {"type": "str", "aliases": ["login_host"]},
        "port": {"type": "int", "default": 5432, "aliases": ["login_port"]},
        "user": {"type": "str", "default": "postgres", "aliases": ["login_user"]},
        "password": {"type": "str", "no_log": True, "aliases": ["login_password"]},
        "database": {"type": "str", "default": "postgres", "aliases": ["db", "login_db"]},
        "login_unix_socket": {"type": "path"},
        "sslmode": {"type": "str", "default": "prefer", "choices": SSL_MODES, "aliases": ["ssl_mode"]},
        "ca_cert": {"type": "path", "aliases": ["ssl_rootcert"]},
        "connect_timeout": {"type": "int", "default": 10},
        "application_name": {"type": "str", "default": DEFAULT_APPLICATION_NAME},
        "query_timeout": {"type": "str", "default": "30s"},
    }


def parse_seconds(value: Any, option: str) -> float:
    """A number of seconds, or a duration such as ``90s`` / ``5m``; never negative."""
    if isinstance(value, bool):
        raise ValueError(f"{option}: expected seconds or a duration such as 30s or 5m, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        match = _DURATION.match(text)
        try:
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else float(text)
        except ValueError:
            raise ValueError(f"{option}: expected seconds or a duration such as 30s, 5m or 1h, got {value!r}") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{option}: expected a finite number of seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"{option}: must not be negative, got {value!r}")
    return seconds


def connection_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The libpq keywords for ``psycopg.connect`` (validated; raises ValueError naming an option)."""
    if params["connect_timeout"] is None or params["connect_timeout"] < 1:
        raise ValueError(f"connect_timeout: must be at least 1 second, got {params['connect_timeout']}")
    port = params["port"]
    if not 1 <= port <= 65535:
        raise ValueError(f"port: must be between 1 and 65535, got {port}")
    kwargs: dict[str, Any] = {
        "port": port,
        "user": params["user"],
        "dbname": params["database"],
        "sslmode": params["sslmode"],
        "connect_timeout": params["connect_timeout"],
        "application_name": params["application_name"],
    }
    # A socket directory wins over host: it is how a superuser on the database host gets in when TCP is
    # saturated or restricted. Neither given → libpq's defaults (PGHOST, then the local socket).
    if params.get("login_unix_socket"):
        kwargs["host"] = params["login_unix_socket"]
    elif params.get("host"):
        kwargs["host"] = params["host"]
    if params.get("password"):
        kwargs["password"] = params["password"]
    if params.get("ca_cert"):
        kwargs["sslrootcert"] = params["ca_cert"]
    return kwargs


# libpq reports connection failures as text only (no SQLSTATE), so they are recognised by message.
_CONNECT_ERRORS: list[tuple[re.Pattern, str, str]] = [
    (re.compile(r"password authentication failed|no password supplied|SCRAM|authentication failed for user", re.I), "password",
     "password: authentication failed for user {user!r}; check user and password"),
    (re.compile(r'role "[^"]*" does not exist', re.I), "user", "user: role {user!r} does not exist on the server"),
    (re.compile(r'database "[^"]*" does not exist', re.I), "database", "database: database {database!r} does not exist on the server"),
    (re.compile(r"too many clients already|remaining connection slots are reserved|connection slots are reserved", re.I), "user",
     "user: the server has no free connection slots for {user!r} (max_connections reached); a superuser can still connect "
     "through the superuser_reserved_connections slots, so run the diagnostics as a superuser"),
    (re.compile(r"no pg_hba\.conf entry|pg_hba\.conf rejects", re.I), "host",
     "host: the server's pg_hba.conf does not allow user {user!r} to reach database {database!r} from here "
     "(check host, user, database and sslmode)"),
    (re.compile(r"SSL|certificate", re.I), "sslmode", "sslmode: TLS negotiation failed with sslmode={sslmode}"),
    (re.compile(r"No such file or directory", re.I), "login_unix_socket",
     "login_unix_socket: no PostgreSQL socket at {where}; check login_unix_socket and port"),
    (re.compile(r"Connection refused|could not translate host name|Name or service not known|timeout expired|"
                r"No route to host|Network is unreachable|could not connect|Connection timed out", re.I), "host",
     "host: cannot reach PostgreSQL at {where}; check host and port (and that the server is running)"),
]


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "********") if secret else text


def connect_error(exc: Exception, params: dict[str, Any]) -> PostgresError:
    """Turn a failure of ``psycopg.connect`` into a PostgresError naming the option to fix."""
    raw = " ".join(str(exc).split())
    where = (f"socket directory {params['login_unix_socket']} port {params['port']}" if params.get("login_unix_socket")
             else f"{params.get('host') or 'the default host'}:{params['port']}")
    details = {"user": params["user"], "database": params["database"], "sslmode": params["sslmode"], "where": where}
    for pattern, option, template in _CONNECT_ERRORS:
        if pattern.search(raw):
            message = template.format(**details)
            return PostgresError(_scrub(f"{message} (server said: {raw})", params.get("password")), option=option)
    return PostgresError(_scrub(f"host: cannot connect to PostgreSQL at {where}: {raw}", params.get("password")), option="host")


def query_error(exc: Exception, what: str, params: dict[str, Any] | None = None) -> PostgresError:
    """Turn an error raised while running ``what`` into a PostgresError (timeouts and privileges made explicit)."""
    sqlstate = getattr(exc, "sqlstate", None)
    raw = " ".join(str(exc).split())
    if sqlstate == "57014":
        message = f"query_timeout: {what} was cancelled after query_timeout ({params['query_timeout'] if params else '?'}): {raw}"
        return PostgresError(message, option="query_timeout", sqlstate=sqlstate)
    if sqlstate == "42501":
        return PostgresError(f"user: permission denied while {what}; grant the role pg_monitor or run as a superuser ({raw})",
                             option="user", sqlstate=sqlstate)
    if sqlstate == "55P03":
        return PostgresError(f"{what} could not get a lock within the lock timeout: {raw}", sqlstate=sqlstate)
    if psycopg is not None and isinstance(exc, psycopg.OperationalError) and sqlstate is None:
        return PostgresError(f"host: lost the connection to PostgreSQL while {what}: {raw}", option="host")
    return PostgresError(f"{what} failed: {raw}", sqlstate=sqlstate)


def connect(params: dict[str, Any], read_only: bool = True):
    """Open an autocommit psycopg connection configured for diagnostics.

    Every statement is bounded by ``query_timeout`` (statement_timeout) and waits at most that long
    for a lock; ``read_only`` makes every transaction read-only at the server, a second line of defence
    for modules that must never write.
    """
    if psycopg is None:
        raise PostgresError(missing_required_lib("psycopg (version 3)"), option=None)
    timeout_ms = int(parse_seconds(params["query_timeout"], "query_timeout") * 1000)
    if timeout_ms < 1:
        raise ValueError("query_timeout: must be greater than 0")
    kwargs = connection_kwargs(params)
    try:
        conn = psycopg.connect(autocommit=True, **kwargs)
    except psycopg.Error as exc:
        raise connect_error(exc, params) from None
    try:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false),"
            " set_config('default_transaction_read_only', %s, false)",
            (str(timeout_ms), str(timeout_ms), "on" if read_only else "off"),
        )
    except psycopg.Error as exc:
        conn.close()
        raise query_error(exc, "configuring the session", params) from None
    return conn


def fetch_all(conn, query, params: Any = None, what: str = "running a query", module_params: dict | None = None) -> list[dict[str, Any]]:
    """Run one statement and return its rows as dicts; errors become PostgresError."""
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description else []
    except psycopg.Error as exc:
        raise query_error(exc, what, module_params) from None


def server_version_num(conn) -> int:
    """``150018`` for 15.18: the number feature checks compare against."""
    return int(conn.info.server_version)


def truncate(text: str | None, length: int) -> str | None:
    """Cut ``text`` to ``length`` characters with an ellipsis (0 = no limit)."""
    if text is None or length <= 0 or len(text) <= length:
        return text
    return text[: max(length - 1, 0)] + "…"


class PostgresModule(AnsibleModule):
    """An AnsibleModule with the shared PostgreSQL options, the psycopg check and connection handling."""

    def __init__(self, argument_spec: dict[str, Any] | None = None, **kwargs: Any):
        spec = postgres_argument_spec()
        spec.update(argument_spec or {})
        super().__init__(argument_spec=spec, **kwargs)
        if psycopg is None:
            self.fail_json(msg=missing_required_lib("psycopg (version 3)"), exception=PSYCOPG_IMPORT_ERROR)

    def connect(self, read_only: bool = True):
        """A diagnostic connection; fails the module with a message naming the option on any error."""
        try:
            return connect(self.params, read_only=read_only)
        except PostgresError as exc:
            self.fail_postgres(exc)
        except ValueError as exc:
            self.fail_json(msg=str(exc))
        return None  # not reached: fail_json exits

    def exit_with_limitations(self, result: dict[str, Any]) -> None:
        """Exit with what could not be seen or done as ``limitations`` and as task warnings.

        ``warnings`` is Ansible's own result key (deprecated for modules to set); the collectors fill it,
        and this moves it where it stays readable as data.
        """
        result["limitations"] = result.pop("warnings", [])
        for limitation in result["limitations"]:
            self.warn(limitation)
        self.exit_json(**result)

    def fail_postgres(self, exc: PostgresError, **extra: Any) -> None:
        """Report a PostgresError; the option it names and SQLSTATE go into the result for playbooks."""
        result: dict[str, Any] = {"msg": str(exc)}
        if exc.option:
            result["option"] = exc.option
        if exc.sqlstate:
            result["sqlstate"] = exc.sqlstate
        result.update(extra)
        self.fail_json(**result)
