# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small JSON-over-HTTP client shared by the modules that talk to HTTP services.

It uses ansible's own ``open_url`` so modules need no third-party library on the target,
and turns every transport problem into one of two exceptions the modules report clearly.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit

from ansible.module_utils.urls import open_url


class ServiceUnreachable(Exception):
    """The service could not be reached at all (refused, DNS, timeout, TLS)."""


class ServiceError(Exception):
    """The service answered, but with an error status or an unreadable body."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


def validate_base_url(url: str, option: str = "url") -> str:
    """Return ``url`` without a trailing slash, or raise ValueError naming ``option``."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{option}: expected an http(s) URL such as http://127.0.0.1:9090, got {url!r}")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        # a line break here would be a second request line or header on the wire
        raise ValueError(f"{option}: the URL contains whitespace or a control character: {url!r}")
    try:
        parts.port  # pylint: disable=pointless-statement
    except ValueError:
        raise ValueError(f"{option}: the port in {url!r} is not a number between 0 and 65535") from None
    return url.rstrip("/")


class JsonHttpClient:
    """GET/POST JSON against one base URL with a timeout and optional bearer token."""

    def __init__(self, base_url: str, timeout: float = 10.0, validate_certs: bool = True,
                 bearer_token: str | None = None, headers: dict[str, str] | None = None,
                 option_name: str = "url"):
        self.base_url = validate_base_url(base_url, option_name)
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.headers = {"Accept": "application/json"}
        if headers:
            self.headers.update(headers)
        if bearer_token:
            self.headers["Authorization"] = f"Bearer {bearer_token}"

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                data: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON or text).  Raise on transport failure."""
        url = self.base_url + path
        body = None
        headers = dict(self.headers)
        if params:
            query = urlencode({k: v for k, v in params.items() if v is not None})
            if method == "GET":
                url = f"{url}?{query}"
            else:
                body = query
                headers["Content-Type"] = "application/x-www-form-urlencoded"
        if data is not None:
            body = json.dumps(data)
            headers["Content-Type"] = "application/json"
        try:
            response = open_url(url, data=body, method=method, headers=headers, timeout=self.timeout,
                                validate_certs=self.validate_certs, follow_redirects="safe")
            status, raw = response.getcode(), response.read()
        except HTTPError as exc:
            status, raw = exc.code, exc.read() if exc.fp else b""
        except (URLError, socket.timeout, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceUnreachable(f"cannot reach {self.base_url}: {reason}") from exc
        text = raw.decode("utf-8", errors="replace")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text
