# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every module that talks to PostgreSQL."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - When neither O(host) nor O(login_unix_socket) is set, libpq's defaults apply (E(PGHOST), then the local socket).
      - Set the connection once for all PostgreSQL modules with C(module_defaults) and the C(group/sre.runbooks.postgres) action group.
    type: str
    aliases: [login_host]
  port:
    description: TCP port of the server, also the suffix of its unix socket file.
    type: int
    default: 5432
    aliases: [login_port]
  user:
    description:
      - Role to connect as.
      - Diagnostics see every session's query text only as a superuser or a member of C(pg_monitor) / C(pg_read_all_stats).
      - When the connection pool is exhausted only a superuser can still connect, through the
        C(superuser_reserved_connections) slots; normal roles get C(too many clients).
    type: str
    default: postgres
    aliases: [login_user]
  password:
    description: Password of O(user). Never logged or returned.
    type: str
    aliases: [login_password]
  database:
    description: Database to connect to. Per-database statistics (tables, indexes) are those of this database.
    type: str
    default: postgres
    aliases: [db, login_db]
  login_unix_socket:
    description:
      - Directory holding the server's unix socket, for example V(/var/run/postgresql). Takes precedence over O(host).
      - The usual way in as the C(postgres) superuser on the database host (with C(become_user=postgres) and peer authentication).
    type: path
  sslmode:
    description: libpq C(sslmode) for the connection.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
    default: prefer
    aliases: [ssl_mode]
  ca_cert:
    description: CA certificate file used to verify the server with O(sslmode=verify-ca) or O(sslmode=verify-full).
    type: path
    aliases: [ssl_rootcert]
  connect_timeout:
    description: Seconds to wait for the connection before giving up.
    type: int
    default: 10
  application_name:
    description: C(application_name) of the module's own session, so it is recognisable in C(pg_stat_activity) and excluded from its own findings.
    type: str
    default: sre.runbooks
  query_timeout:
    description:
      - Longest a single statement of the module may run (its session's C(statement_timeout) and C(lock_timeout)),
        as seconds or a duration such as V(30s) or V(2m). Keeps a diagnostic from hanging on a sick server.
    type: str
    default: 30s
requirements:
  - psycopg >= 3.1 (C(psycopg[binary]) or C(psycopg) with libpq) on the host that runs the module
notes:
  - The session is autocommit and every transaction in it is read-only unless the module says otherwise.
"""
