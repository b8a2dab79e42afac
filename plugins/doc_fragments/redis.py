# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every module that talks to Redis."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  host:
    description:
      - Host name or address of the Redis server.
      - Set the connection once for all modules with C(module_defaults) and the C(group/sre.runbooks.redis) action group.
    type: str
    default: 127.0.0.1
    aliases: [login_host]
  port:
    description: TCP port of the Redis server.
    type: int
    default: 6379
    aliases: [login_port]
  unix_socket:
    description: Path of a Redis unix socket; when set, O(host) and O(port) are not used.
    type: path
  username:
    description: ACL user name (Redis 6 and later). Needs O(password).
    type: str
    aliases: [login_user]
  password:
    description: Password sent with C(AUTH); never shown in results or logs.
    type: str
    aliases: [login_password]
  db:
    description: Database number selected after connecting; key sampling happens in this database.
    type: int
    default: 0
  tls:
    description: Connect with TLS (C(rediss://)).
    type: bool
    default: false
  validate_certs:
    description: With O(tls=true), verify the server's certificate and host name.
    type: bool
    default: true
  ca_path:
    description: With O(tls=true), a PEM file of CA certificates to verify the server with instead of the system store.
    type: path
  timeout:
    description: Seconds to wait for the connection and for each reply.
    type: float
    default: 5
  allow_unreachable:
    description:
      - When Redis cannot be reached, return RV(reachable=false) with the reason instead of failing.
      - Runbooks set this so that a cache that is down becomes a finding in the report, not a crashed run.
      - Refused credentials always fail.
    type: bool
    default: false
"""
