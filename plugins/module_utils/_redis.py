# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small dependency-free Redis client (RESP2 over TCP, TLS or a unix socket).

The modules only need a handful of read-only commands (INFO, CONFIG GET, SCAN, TTL,
MEMORY USAGE), so a few dozen lines of protocol spare every target the ``redis`` library.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any


class RedisUnreachable(Exception):
    """Redis could not be reached, or the connection broke (refused, timeout, TLS, reset)."""


class RedisReplyError(Exception):
    """Redis answered a command with an error reply (``-ERR ...``, ``-NOPERM ...``)."""

    @property
    def code(self) -> str:
        """The error's first word: ERR, NOPERM, WRONGPASS, NOAUTH, ..."""
        text = str(self)
        return text.split(" ", 1)[0] if text else ""


class RedisAuthError(RedisReplyError):
    """AUTH was refused or is required."""


class RedisProtocolError(RedisUnreachable):
    """The peer does not speak RESP (wrong port, TLS mismatch)."""


def encode_command(*args: Any) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespReader:
    """Parse RESP2 replies from a file-like object with ``readline`` and ``read``."""

    def __init__(self, stream):
        self.stream = stream

    def _line(self) -> bytes:
        line = self.stream.readline()
        if not line:
            raise RedisUnreachable("connection closed by the server (is it Redis, and does it need tls?)")
        if not line.endswith(b"\r\n"):
            raise RedisProtocolError(f"not a Redis reply: {line[:40]!r} (is this port Redis, and is tls set right?)")
        return line[:-2]

    def read(self) -> Any:
        """Return one reply: str, int, bytes, None, list, or a RedisReplyError instance (not raised)."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", errors="replace")
        if kind == b"-":
            text = rest.decode("utf-8", errors="replace")
            if text.startswith(("NOAUTH", "WRONGPASS")) or "invalid password" in text:
                return RedisAuthError(text)
            return RedisReplyError(text)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = self.stream.read(length + 2)
            if len(data) != length + 2:
                raise RedisUnreachable("connection closed in the middle of a reply")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [self.read() for _index in range(count)]
        raise RedisProtocolError(f"not a Redis reply: {line[:40]!r} (is this port Redis, and is tls set right?)")


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_text(item) for item in value]
    return value


class RedisClient:
    """One connection; ``command`` raises on error replies, ``pipeline`` returns them in place."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, unix_socket: str | None = None,
                 username: str | None = None, password: str | None = None, db: int = 0,
                 tls: bool = False, validate_certs: bool = True, ca_path: str | None = None,
                 timeout: float = 5.0):
        self.address = unix_socket if unix_socket else f"{host}:{port}"
        self._sock = None
        self._reader = None
        try:
            if unix_socket:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(unix_socket)
            else:
                sock = socket.create_connection((host, port), timeout=timeout)
            if tls:
                context = ssl.create_default_context(cafile=ca_path)
                if not validate_certs:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname=None if unix_socket else host)
        except (OSError, ssl.SSLError) as exc:
            raise RedisUnreachable(f"cannot connect to Redis at {self.address}: {exc}") from exc
        self._sock = sock
        self._reader = RespReader(sock.makefile("rb"))
        try:
            if password:
                args = ["AUTH", username, password] if username else ["AUTH", password]
                try:
                    self.command(*args)
                except RedisAuthError:
                    raise
                except RedisReplyError as exc:  # e.g. a password given to a server that has none
                    raise RedisAuthError(str(exc)) from None
            if db:
                try:
                    self.command("SELECT", db)
                except RedisAuthError:
                    raise
                except RedisReplyError as exc:
                    raise RedisReplyError(f"db: Redis at {self.address} refused SELECT {db}: {exc}") from None
        except RedisAuthError as exc:
            self.close()
            raise RedisAuthError(f"Redis at {self.address} refused the credentials: {exc}") from None
        except Exception:
            self.close()
            raise

    def pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send all commands at once, then read one reply each; error replies come back as exceptions."""
        if not commands:
            return []
        try:
            self._sock.sendall(b"".join(encode_command(*cmd) for cmd in commands))
            return [_text(self._reader.read()) for _cmd in commands]
        except (OSError, ValueError) as exc:
            raise RedisUnreachable(f"connection to Redis at {self.address} failed: {exc} (is it Redis, and does it need tls?)") from exc

    def command(self, *args: Any) -> Any:
        reply = self.pipeline([args])[0]
        if isinstance(reply, RedisReplyError):
            if reply.code == "NOAUTH":
                raise RedisAuthError(f"Redis at {self.address} needs a password: {reply}")
            raise reply
        return reply

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:  # pragma: no cover - closing a broken socket
                pass
            self._sock = None

    def __enter__(self) -> RedisClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def redis_argument_spec() -> dict[str, Any]:
    """The options of the ``sre.runbooks.redis`` doc fragment, for ``argument_spec``."""
    return {
        "host": {"type": "str", "default": "127.0.0.1", "aliases": ["login_host"]},
        "port": {"type": "int", "default": 6379, "aliases": ["login_port"]},
        "unix_socket": {"type": "path"},
        "username": {"type": "str", "aliases": ["login_user"]},
        "password": {"type": "str", "no_log": True, "aliases": ["login_password"]},
        "db": {"type": "int", "default": 0},
        "tls": {"type": "bool", "default": False},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "timeout": {"type": "float", "default": 5},
        "allow_unreachable": {"type": "bool", "default": False},
    }


def client_from_params(params: dict[str, Any]) -> RedisClient:
    """Connect with the module's parameters; raise ValueError naming a bad option."""
    if params["timeout"] <= 0:
        raise ValueError(f"timeout: must be greater than 0, got {params['timeout']}")
    if not 0 < params["port"] < 65536:
        raise ValueError(f"port: must be between 1 and 65535, got {params['port']}")
    if params["db"] < 0:
        raise ValueError(f"db: must be 0 or more, got {params['db']}")
    if params.get("username") and not params.get("password"):
        raise ValueError("username: needs password as well (Redis ACL AUTH takes both)")
    return RedisClient(host=params["host"], port=params["port"], unix_socket=params.get("unix_socket"),
                       username=params.get("username"), password=params.get("password"), db=params["db"],
                       tls=params["tls"], validate_certs=params["validate_certs"], ca_path=params.get("ca_path"),
                       timeout=params["timeout"])
