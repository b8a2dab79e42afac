"""The application: request observation (metrics, access and error logs) and failure injection."""

from __future__ import annotations

import os
import random
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Match

from . import errors, metrics
from . import api
from .cache import make_cache
from .config import Settings
from .faults import ErrorBurst, FaultSwitch
from .releases import ReleaseTracker
from .repository import get_repository

UNMEASURED = ("/metrics",)  # as the real instrumentator is configured: scrapes are not traffic


@dataclass
class Context:
    settings: Settings
    repository: object
    releases: ReleaseTracker
    faults: FaultSwitch
    secret_key: str
    rng: random.Random
    schedule_cache: object
    version: str = ""
    defect: ErrorBurst | None = None  # the current release's defect, parsed once per release

    def release(self):
        release = self.releases.current()
        if release.version != self.version:
            if self.version:
                logger.info("Release changed from {} to {}", self.version, release.version)
            self.version = release.version
            metrics.set_release(release.version)
            self.defect = None
            if release.defect:
                try:
                    self.defect = ErrorBurst.from_spec(release.defect)
                except (TypeError, ValueError) as exc:
                    logger.error("Ignoring defect of release {}: {}", release.version, exc)
        return release

    def failure_for(self, handler: str) -> str | None:
        """The failure this request gets from an active fault or the release's defect, if any."""
        self.release()
        effects = [*self.faults.refresh().values(), *([self.defect] if self.defect else [])]
        for effect in effects:
            kind = effect.failure_for(handler, self.rng)
            if kind:
                return kind
        return None


def route_template(app: FastAPI, scope) -> str:
    """The matched route's path template (the metrics' handler label), or "none"."""
    for route in app.router.routes:
        if route.matches(scope)[0] == Match.FULL:
            return route.path
    return "none"


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = app.state.ctx.settings
    logger.info("Application startup complete: {}:{} (host {}, release {})", settings.bind, settings.port, settings.host_id, app.state.ctx.version)
    yield
    logger.info("Application shutdown: {}:{} stopping", settings.bind, settings.port)


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="Residency Scheduler (lab stand-in)", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.ctx = ctx = Context(
        settings=settings,
        repository=get_repository(settings.seed, settings.database_url, settings.db_pool_size, settings.db_pool_max_overflow),
        releases=ReleaseTracker(settings.current_link),
        faults=FaultSwitch(settings.fault_file),
        secret_key=os.environ.get("SECRET_KEY", "lab-secret-key-not-for-production"),
        rng=random.Random(settings.seed or None),
        schedule_cache=make_cache(settings.redis_url, settings.schedule_cache_ttl),
    )
    ctx.release()
    api.register(app)

    @app.get("/health")
    def health():
        release = ctx.release()
        database = ctx.repository.ping()
        return {
            "status": "healthy" if database == "ok" else "degraded",
            "database": database,
            "host": settings.host_id,
            "version": release.version,
            "release": release.as_dict(),
            "faults": {name: effect.describe() for name, effect in ctx.faults.refresh().items()},
        }

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        handler = route_template(app, request.scope)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        failure = ctx.failure_for(handler) if handler.startswith("/api/") else None
        token = errors.inject(failure)
        try:
            response = await call_next(request)
            exc = None
        except Exception as raised:  # pylint: disable=broad-exception-caught
            exc = raised
            response = JSONResponse({"detail": "Internal Server Error", "request_id": request_id}, status_code=errors.status_for(exc))
        finally:
            errors.reset(token)
        duration = time.perf_counter() - started
        status = response.status_code
        response.headers["x-request-id"] = request_id
        if handler not in UNMEASURED:
            metrics.REQUESTS.labels(method=request.method, status=str(status), handler=handler).inc()
            metrics.LATENCY.labels(method=request.method, handler=handler).observe(duration)
        record = logger.bind(endpoint=request.url.path, method=request.method, status=status, request_id=request_id,
                             duration_ms=round(duration * 1000, 2))
        if exc is not None:
            record.opt(exception=exc).error("Unhandled error on {} {}: {}: {}", request.method, request.url.path, type(exc).__name__, exc)
        elif handler not in UNMEASURED:
            record.info("{} {} {} {:.1f}ms request_id={}", request.method, request.url.path, status, duration * 1000, request_id)
        return response

    return app
