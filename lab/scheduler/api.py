"""The API: endpoints shaped like the real backend's, served from the repository."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Optional

from fastapi import FastAPI, HTTPException, Query, Request
from loguru import logger
from pydantic import BaseModel, field_validator

from . import metrics, security
from .errors import InvalidTokenError, triggered
from .repository import ROTATIONS, password_hash

PREFIX = "/api/v1"
_ROUTES: list = []


def _route(method: str, path: str):
    def add(endpoint):
        _ROUTES.append((method, PREFIX + path, endpoint))
        return endpoint

    return add


def register(app: FastAPI) -> None:
    # Added to the app itself (not via include_router) so each route keeps its
    # path template, which the middleware uses as the metrics' handler label.
    for method, path, endpoint in _ROUTES:
        app.add_api_route(path, endpoint, methods=[method])


ROLES = ("primary", "supervising", "backup")
PERSON_TYPES = ("resident", "faculty")


class Person(BaseModel):
    id: int
    name: str
    type: str
    email: str
    pgy_level: Optional[int] = None
    faculty_role: Optional[str] = None
    display_name: str

    @field_validator("type")
    @classmethod
    def known_type(cls, value: str) -> str:
        if value not in PERSON_TYPES:
            raise ValueError(f"type must be one of {', '.join(PERSON_TYPES)}")
        return value


class Assignment(BaseModel):
    id: int
    block_id: int
    person_id: int
    rotation_template_id: Optional[int] = None
    rotation: Optional[str] = None
    role: str
    override_reason: Optional[str] = None
    created_by: str
    created_at: datetime

    @field_validator("role")
    @classmethod
    def known_role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return value


class LoginRequest(BaseModel):
    username: str
    password: str


# -- serialization: where validation and "other" failures surface, as in the real code --

# A row a bad write left behind, for the validation fault.
_INVALID_VALUES = {Person: ("type", "attending"), Assignment: ("role", "attending")}


def _lose_column(row: dict, column: str) -> None:
    """The "other" fault: a column the code relies on is missing (schema drift)."""
    if triggered("other"):
        row.pop(column, None)


def _person_row(row: dict) -> dict:
    _lose_column(row, "pgy_level")
    pgy_level = row["pgy_level"]
    level = f"PGY-{pgy_level}" if pgy_level else (row["faculty_role"] or "faculty").replace("_", " ")
    return {**row, "display_name": f"{row['name']} ({level})"}


def _assignment_row(row: dict) -> dict:
    _lose_column(row, "rotation_template_id")
    template = row["rotation_template_id"]  # a KeyError when the column is missing: the "other" fault
    # NULL is allowed by the schema: a supervising faculty member a schedule change added has no rotation
    return {**row, "rotation": ROTATIONS[template] if template is not None else None}


_ENRICH = {Person: _person_row, Assignment: _assignment_row}


def serialize(model, rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        row = _ENRICH[model](dict(row))
        if triggered("validation"):
            field, value = _INVALID_VALUES[model]
            row[field] = value
        out.append(model.model_validate(row).model_dump(mode="json"))
    return out


# -- authentication --

def current_user(request: Request) -> dict:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise HTTPException(status_code=401, detail="Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    try:
        claims = security.decode_access_token(header[7:], request.app.state.ctx.secret_key)
    except InvalidTokenError as exc:
        raise HTTPException(status_code=401, detail=f"Could not validate credentials: {exc}") from None
    return {"user_id": claims["sub"]}


# -- endpoints --

@_route("POST", "/auth/login")
def login(body: LoginRequest, request: Request):
    ctx = request.app.state.ctx
    user = ctx.repository.user(body.username)
    locked = user is not None and (not user.get("is_active", True) or user.get("is_locked", False))
    if user is None or locked or password_hash(body.password, user["password_salt"]) != user["password_hash"]:
        metrics.AUTH_FAILURES.inc()
        from .app import client_ip  # pylint: disable=import-outside-toplevel
        client = client_ip(request)
        logger.bind(event="auth_failure", user=body.username, ip=client).warning("auth_failure user={} ip={}", body.username, client)
        for reason in ctx.auth_watch.failed(body.username, client) if ctx.auth_watch else ():
            metrics.SUSPICIOUS.labels(reason=reason).inc()
            logger.bind(event="suspicious_activity", ip=client, user=body.username, reason=reason).warning(
                "suspicious_activity reason={} user={} ip={}", reason, body.username, client)
        raise HTTPException(status_code=401, detail="Incorrect username or password")
    token = security.create_access_token(str(user["id"]), ctx.secret_key)
    return {"access_token": token, "token_type": "bearer", "user": serialize(Person, [user])[0]}


@_route("GET", "/people")
def people(request: Request, person_type: Optional[str] = Query(None, alias="type")):
    current_user(request)
    return serialize(Person, request.app.state.ctx.repository.people(person_type))


@_route("GET", "/assignments")
def assignments(request: Request, person_id: Optional[int] = None, skip: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)):
    current_user(request)
    return serialize(Assignment, request.app.state.ctx.repository.assignments(person_id=person_id, limit=limit, offset=skip))


@_route("GET", "/schedules")
def schedules(request: Request, start: Optional[date] = None, days: int = 7):
    current_user(request)
    ctx = request.app.state.ctx
    start = start or ctx.repository.start
    if not 1 <= days <= 28:
        raise HTTPException(status_code=422, detail="days must be between 1 and 28")
    cache_key = f"blocks:{start.isoformat()}:{days}"
    blocks = ctx.schedule_cache.get(cache_key)
    if blocks is None:
        blocks = [{k: (v.isoformat() if isinstance(v, date) else v) for k, v in b.items()} for b in ctx.repository.blocks(start, days)]
        ctx.schedule_cache.put(cache_key, blocks)
    rows = ctx.repository.assignments(block_ids={b["id"] for b in blocks})
    by_block: dict[int, list] = {}
    for item in serialize(Assignment, rows):
        by_block.setdefault(item["block_id"], []).append(item)
    return {
        "start": start.isoformat(),
        "end": (start + timedelta(days=days)).isoformat(),
        "blocks": [{**b, "assignments": by_block.get(b["id"], [])} for b in blocks],
    }


@_route("GET", "/audit")
def audit(request: Request, hours: float = Query(24.0, gt=0, le=24 * 366), limit: int = Query(50, ge=1, le=500)):
    """The activity feed (coordinators' dashboard): the audit events of the last ``hours``, newest first."""
    current_user(request)
    since = datetime.now(timezone.utc) - timedelta(hours=hours)
    return {"since": since.isoformat(), "events": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
                                                   for row in request.app.state.ctx.repository.audit(since, limit)]}


@_route("GET", "/export")
def export(request: Request, limit: int = Query(25, ge=1, le=100000), skip: int = Query(0, ge=0)):
    user = current_user(request)
    records = serialize(Assignment, request.app.state.ctx.repository.assignments(limit=limit, offset=skip))
    metrics.EXPORT_RECORDS.labels(user_id=user["user_id"]).inc(len(records))
    from .app import client_ip  # pylint: disable=import-outside-toplevel
    # who exported what: the audit trail the LargeDataExport runbook starts from
    logger.bind(event="data_export", user_id=user["user_id"], records=len(records), ip=client_ip(request), limit=limit, skip=skip).info(
        "data_export user_id={} records={} ip={}", user["user_id"], len(records), client_ip(request))
    return {"format": "json", "count": len(records), "records": records}
