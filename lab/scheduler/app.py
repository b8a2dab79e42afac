"""The application: request observation (metrics, access and error logs) and failure injection."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from urllib.parse import unquote_plus
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.routing import Match

from . import errors, metrics
from . import api
from .cache import make_cache
from .config import Settings
from .faults import ErrorBurst, FaultSwitch
from .releases import ReleaseTracker
from .repository import get_repository

UNMEASURED = ("/metrics",)
# What the app flags as suspicious in a request (the audit log and suspicious_activity_total{reason}).
PROBES = re.compile(r"(\.\./|%2e%2e|union\s+select|'\s*or\s+'?1'?\s*=\s*'?1|<script|;\s*drop\s+table)", re.IGNORECASE)
SPRAY_WINDOW = 60.0
SPRAY_ACCOUNTS = 10  # failed logins for this many accounts from one address in the window: password spray
STUFFING_ADDRESSES = 5  # failed logins for one account from this many addresses: credential stuffing


def client_ip(request: Request) -> str:
    """The client: the first X-Forwarded-For hop when the peer is the local proxy (loopback), else the peer."""
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded and peer.startswith("127."):
        return forwarded.split(",")[0].strip() or peer
    return peer


class Denylist:
    """The app-level denylist (the ``denylist_file`` of sre.runbooks.ip_blocklist: ``{"blocked": [{"address",
    "expires", ...}]}``): requests from a listed client address or network are refused with 403 before anything
    else. Re-read when the file changes (checked at most every half second); expired entries are ignored."""

    def __init__(self, path: Path):
        self.path = path
        self._signature = None
        self._checked = 0.0
        self.entries: list[tuple] = []

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 0.5:
            return
        self._checked = now
        try:
            st = self.path.stat()
            signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            signature = None
        if signature == self._signature:
            return
        self._signature = signature
        entries = []
        try:
            blocked = json.loads(self.path.read_text(encoding="utf-8") or "{}").get("blocked", []) if signature else []
            for entry in blocked:
                expires = entry.get("expires")
                until = datetime.fromisoformat(str(expires).replace("Z", "+00:00")) if expires else None
                entries.append((ipaddress.ip_network(entry["address"], strict=False), until))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.error("Ignoring unreadable denylist {}: {}", self.path, exc)
        self.entries = entries
        logger.info("Denylist changed: {} entr{}", len(entries), "y" if len(entries) == 1 else "ies")

    def blocked(self, client: str) -> bool:
        self._refresh()
        if not self.entries:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        now = datetime.now(timezone.utc)
        return any(address in net and (until is None or until > now) for net, until in self.entries)


class AuthWatch:
    """Failed logins in a sliding window: one address trying many accounts, one account from many addresses."""

    def __init__(self):
        self.lock = threading.Lock()
        self.failures: deque = deque()
        self.flagged: dict[tuple, float] = {}

    def failed(self, account: str, address: str) -> list[str]:
        now = time.monotonic()
        with self.lock:
            self.failures.append((now, account, address))
            while self.failures and now - self.failures[0][0] > SPRAY_WINDOW:
                self.failures.popleft()
            accounts, addresses = set(), set()
            for _when, acc, addr in self.failures:
                if addr == address:
                    accounts.add(acc)
                if acc == account:
                    addresses.add(addr)
            reasons = []
            checks = (("password_spray", ("ip", address), len(accounts), SPRAY_ACCOUNTS),
                      ("credential_stuffing", ("account", account), len(addresses), STUFFING_ADDRESSES))
            for reason, key, count, limit in checks:
                if count >= limit and now - self.flagged.get(key, -1e9) > 10:
                    self.flagged[key] = now
                    reasons.append(reason)
            return reasons


class Actors:
    """Faults carried out by threads of the app (pool_leak, cpu_burn, memory_leak, cache_ttl), started and
    stopped as the fault file changes (polled every half second)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.running: dict[str, threading.Event] = {}
        self.leaked: list = []  # pool connections held by pool_leak
        self.hoard: list = []  # memory held by memory_leak
        self.default_ttl = getattr(ctx.schedule_cache, "ttl", None)
        threading.Thread(target=self.loop, name="fault-actors", daemon=True).start()

    def loop(self) -> None:
        while True:
            try:
                self.sync()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                logger.error("Fault actors: {}: {}", type(exc).__name__, exc)
            time.sleep(0.5)

    def sync(self) -> None:
        active = self.ctx.faults.refresh()
        for name in ("pool_leak", "cpu_burn", "memory_leak"):
            if name in active and name not in self.running:
                stop = self.running[name] = threading.Event()
                for _thread in range(active[name].get("threads", 1) if name == "cpu_burn" else 1):
                    threading.Thread(target=getattr(self, name), args=(active[name], stop), name=name, daemon=True).start()
                logger.warning("Fault {} started: {}", name, active[name].describe())
            elif name not in active and name in self.running:
                self.running.pop(name).set()
                logger.info("Fault {} stopped", name)
        if hasattr(self.ctx.schedule_cache, "ttl"):
            ttl = active["cache_ttl"].get("ttl", 0.05) if "cache_ttl" in active else self.default_ttl
            self.ctx.schedule_cache.ttl = ttl

    def pool_leak(self, effect, stop: threading.Event) -> None:
        """Check out a connection every ``interval`` seconds and never give it back, up to ``connections``."""
        pool = getattr(self.ctx.repository, "pool", None)
        limit = effect.get("connections", (pool.size + pool.max_overflow) if pool else 0)
        interval = effect.get("interval", 0.5)
        held = []
        while not stop.is_set() and pool is not None:
            if len(held) < limit:
                manager = pool.connection()
                try:
                    manager.__enter__()  # pylint: disable=unnecessary-dunder-call
                    held.append(manager)
                    logger.debug("Connection checked out and not returned ({} held)", len(held))
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    logger.warning("pool_leak: {}", exc)
            stop.wait(interval)
        for manager in held:
            manager.__exit__(None, None, None)

    def cpu_burn(self, effect, stop: threading.Event) -> None:
        """Hash in a loop until stopped (a runaway computation); ``duty`` is the share of each 100 ms spent on it.
        hashlib releases the GIL on large buffers, so the process uses a whole core and still serves requests."""
        duty = min(1.0, max(0.05, effect.get("duty", 1.0)))
        block = os.urandom(1 << 20)
        while not stop.is_set():
            until = time.perf_counter() + 0.1 * duty
            while time.perf_counter() < until:
                block = hashlib.sha256(block).digest() * (1 << 15)
            if duty < 1.0:
                time.sleep(0.1 * (1 - duty))

    def memory_leak(self, effect, stop: threading.Event) -> None:
        """Allocate and keep ``step_mb`` every ``interval`` seconds, up to ``limit_mb`` (cache that never evicts)."""
        step = int(effect.get("step_mb", 16)) * 1024 * 1024
        limit = int(effect.get("limit_mb", 360)) * 1024 * 1024
        interval = effect.get("interval", 0.25)
        while not stop.is_set():
            if len(self.hoard) * step < limit:
                chunk = bytearray(step)
                chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page: resident, not just reserved
                self.hoard.append(chunk)
            stop.wait(interval)
        self.hoard.clear()  # as the real instrumentator is configured: scrapes are not traffic


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
    auth_watch: AuthWatch | None = None
    denylist: Denylist | None = None

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
    ctx.auth_watch = AuthWatch()
    ctx.denylist = Denylist(settings.denylist_file)
    if "crash_on_start" in ctx.faults.refresh():
        # the lab's "service crash": a broken deployment that dies at import, so systemd's restarts fail too
        logger.critical("Application startup failed: {}", "sqlalchemy.exc.ArgumentError: Could not parse SQLAlchemy URL from string")
        raise SystemExit(1)
    ctx.release()
    Actors(ctx)
    REGISTRY.register(metrics.HostMemoryCollector(int(os.environ.get("LAB_MEMORY_BUDGET_MB", "384")) * 1024 * 1024))
    REGISTRY.register(metrics.CPUDemandCollector())
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
        if ctx.denylist is not None and handler != "/metrics" and ctx.denylist.blocked(client_ip(request)):
            logger.bind(event="denied", ip=client_ip(request), endpoint=request.url.path, status=403).info(
                "denied ip={} {} {} (denylist)", client_ip(request), request.method, request.url.path)
            return JSONResponse({"detail": "Forbidden", "request_id": request_id}, status_code=403)
        failure = ctx.failure_for(handler) if handler.startswith("/api/") else None
        slow = ctx.faults.refresh().get("slow_responses")
        if slow is not None and handler.startswith("/api/"):
            await asyncio.sleep(slow.delay_for(handler))
        target = unquote_plus(request.url.path + ("?" + request.url.query if request.url.query else ""))
        if PROBES.search(target) or PROBES.search(request.headers.get("user-agent", "")):
            metrics.SUSPICIOUS.labels(reason="injection_probe").inc()
            # the request as received (decoded, truncated): what the responder classifies and keeps as evidence
            logger.bind(event="suspicious_activity", ip=client_ip(request), reason="injection_probe", request=target[:300],
                        user_agent=request.headers.get("user-agent", "")[:200]).warning(
                "suspicious_activity reason=injection_probe ip={} path={}", client_ip(request), request.url.path)
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
