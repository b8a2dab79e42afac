"""Exceptions the real backend raises, under their real qualified names.

SQLAlchemy and python-jose are not part of the stand-in (it uses psycopg directly), so
their exception classes are imitated here: tracebacks and the log records'
``exception.type`` read exactly as in the real system. Validation errors are
real pydantic errors, and ``other`` is a real KeyError.
"""

from __future__ import annotations

from contextvars import ContextVar

# What an error burst can break, and where by default (shared with lab/labctl.py).
KINDS = ("database", "authentication", "validation", "other")
DEFAULT_ENDPOINTS = ("/api/v1/schedules", "/api/v1/assignments")


class OperationalError(Exception):
    """Imitates sqlalchemy.exc.OperationalError (DBAPI error wrapped by SQLAlchemy)."""

    __module__ = "sqlalchemy.exc"


class JWTError(Exception):
    """Imitates jose.exceptions.JWTError."""

    __module__ = "jose.exceptions"


class InvalidTokenError(JWTError):
    """A client's token is bad (answered with 401); a plain JWTError is a server fault (500)."""


def status_for(exc: BaseException) -> int:
    """HTTP status of an unhandled exception: database outages are 503, the rest 500."""
    return 503 if isinstance(exc, OperationalError) else 500


# The failure chosen for the current request (by a fault or a defective release):
# the layer it belongs to raises it where the real one would.
_injected: ContextVar = ContextVar("injected_failure", default=None)


def inject(kind):
    return _injected.set(kind)


def reset(token) -> None:
    _injected.reset(token)


def triggered(kind: str) -> bool:
    return _injected.get() == kind
