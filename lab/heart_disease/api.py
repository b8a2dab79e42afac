"""The prediction API (FastAPI + uvicorn).

    python -m lab.heart_disease.api --home DIR [--port 18101] [--host 127.0.0.1]

Reads ``config/config.yaml`` and the live model files at start; SIGHUP reloads both. Logs to
``logs/api.log`` in the real system's format and one JSON line per prediction to ``logs/predictions.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import json
import logging
import logging.handlers
import os
import platform
import random
import signal
import stat
import sys
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import NoReturn

import jwt
import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector,
                               ProcessCollector, generate_latest)
from pydantic import BaseModel, Field, create_model

from . import modeling
from .common import (API_VERSION, VERSION_FILES, ConfigError, Home, key_id, load_config, remove_pid, setup_logging,
                     sha256_file, write_json, write_pid)
from .dataset import FEATURE_NAMES, FEATURES, VALID_RANGES

log = logging.getLogger("heart_disease.api")
auth_log = logging.getLogger("heart_disease.auth")
access_log = logging.getLogger("heart_disease.access")
model_log = logging.getLogger("heart_disease.model")
prediction_log = logging.getLogger("heart_disease.predictions")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0)

PatientFeatures = create_model(
    "PatientFeatures",
    **{
        name: ((float if FEATURES[name][0] == "float" else int), Field(ge=VALID_RANGES[name][0], le=VALID_RANGES[name][1]))
        for name in FEATURE_NAMES
    },
)


class BatchRequest(BaseModel):
    instances: list[PatientFeatures] = Field(min_length=1)  # type: ignore[valid-type]


class TokenRequest(BaseModel):
    api_key: str | None = None


class Metrics:
    """The API's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter("http_requests_total", "HTTP requests by handler, method and status",
                                ["method", "handler", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency",
                                 ["method", "handler", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("heart_disease_predictions_total", "Predictions by predicted class",
                                   ["predicted_class"], registry=self.registry)
        self.prediction_errors = Counter("heart_disease_prediction_errors_total", "Prediction requests that failed",
                                         ["reason"], registry=self.registry)
        self.probability = Histogram("heart_disease_prediction_probability", "Predicted probability of heart disease",
                                     buckets=tuple(round(0.1 * step, 1) for step in range(1, 11)), registry=self.registry)
        self.model_info = Gauge("heart_disease_model_info", "The live model (value 1)", ["version", "model_type"],
                                registry=self.registry)
        self.model_loaded = Gauge("heart_disease_model_loaded", "1 if a model is loaded and serving", registry=self.registry)
        self.model_score = Gauge("heart_disease_model_evaluation_score", "The live model's recorded evaluation metrics",
                                 ["metric"], registry=self.registry)
        self.model_loads = Counter("heart_disease_model_loads_total", "Model load attempts", ["result"], registry=self.registry)
        self.auth_failures = Counter("auth_failures_total", "Rejected authentication attempts", ["reason"],
                                     registry=self.registry)
        self.tokens_issued = Counter("heart_disease_tokens_issued_total", "JWTs issued", registry=self.registry)
        self.blocked = Counter("heart_disease_blocked_requests_total", "Requests refused by the denylist", registry=self.registry)
        # every label value from the start, so increase() sees the first failure (a series born at 30 shows no increase)
        for reason in ("invalid_api_key", "missing_credentials", "invalid_token", "expired_token"):
            self.auth_failures.labels(reason)
        for result in ("success", "failure"):
            self.model_loads.labels(result)


class Service:
    """Config, model and metrics of one running API; ``reload`` swaps config and model (SIGHUP)."""

    def __init__(self, home: Home, config: dict) -> None:
        self.home = home
        self.config = config
        self.metrics = Metrics()
        self.model: modeling.LoadedModel | None = None
        self.model_error: str | None = None
        self.loaded_at: float | None = None
        self.started_at = time.time()
        self._latency_cache: tuple[float, dict] | None = None
        self._denylist_cache: tuple[float, list] | None = None
        self.load_model()

    # -- configuration and model -------------------------------------------------------------
    @property
    def auth(self) -> dict:
        return self.config["api"]["auth"]

    @property
    def threshold(self) -> float:
        return float((self.config.get("model") or {}).get("decision_threshold", 0.5))

    def load_model(self) -> None:
        try:
            loaded = modeling.load(self.home)
        except modeling.ModelLoadError as exc:
            self.model, self.model_error = None, str(exc)
            self.metrics.model_loads.labels("failure").inc()
            self.metrics.model_loaded.set(0)
            self.metrics.model_info.clear()
            model_log.error("Failed to load model: %s", exc)
            return
        self.model, self.model_error, self.loaded_at = loaded, None, time.time()
        self.metrics.model_loads.labels("success").inc()
        self.metrics.model_loaded.set(1)
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(loaded.version, modeling.model_type(loaded.model)).set(1)
        for name, value in (loaded.evaluation.get("metrics") or {}).items():
            if name in ("accuracy", "roc_auc", "f1", "precision", "recall"):
                self.metrics.model_score.labels(name).set(value)
        model_log.info("Loaded model version %s (%s)", loaded.version, modeling.model_type(loaded.model))

    def reload(self) -> None:
        log.info("SIGHUP received: reloading configuration and model")
        try:
            self.config = load_config(self.home)
            check_config_mode(self.home)
        except ConfigError as exc:
            log.error("Configuration reload failed, keeping the previous one: %s", exc)
        self.load_model()

    def injected_delay(self) -> float:
        """Seconds to stall a prediction: the lab's latency fault (``.lab/latency.json``), re-read when it changes."""
        path = self.home.lab_state / "latency.json"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            self._latency_cache = None
            return 0.0
        if self._latency_cache is None or self._latency_cache[0] != mtime:
            try:
                self._latency_cache = (mtime, json.loads(path.read_text()))
            except (OSError, ValueError):
                return 0.0
        setting = self._latency_cache[1]
        return float(setting.get("delay_seconds", 0)) + random.uniform(0, float(setting.get("jitter_seconds", 0)))

    def blocked_network(self, address: str) -> str | None:
        """The denylist entry (network) that ADDRESS falls in, or None.

        The denylist is the file ``api.security.denylist_file`` (default ``config/denylist.json``), in the shape
        sre.runbooks.ip_blocklist writes (``{"blocked": [{"address", "expires", ...}]}``), re-read when it changes;
        expired entries are ignored. Like a firewall in front of the app, it applies before authentication.
        """
        setting = (self.config["api"].get("security") or {}).get("denylist_file", "config/denylist.json")
        path = self.home.path(setting) if not os.path.isabs(setting) else Path(setting)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        if self._denylist_cache is None or self._denylist_cache[0] != mtime:
            try:
                entries = json.loads(path.read_text()).get("blocked") or []
            except (OSError, ValueError, AttributeError):
                entries = []
            self._denylist_cache = (mtime, entries)
        try:
            client = ipaddress.ip_address(address)
        except ValueError:
            return None
        now = datetime.now(timezone.utc)
        for entry in self._denylist_cache[1]:
            try:
                network = ipaddress.ip_network(str(entry.get("address")), strict=False)
                expires = entry.get("expires")
                if expires and datetime.fromisoformat(str(expires).replace("Z", "+00:00")) <= now:
                    continue
            except (ValueError, TypeError):
                continue
            if client.version == network.version and client in network:
                return str(network)
        return None

    # -- authentication ----------------------------------------------------------------------
    def match_api_key(self, presented: str) -> str | None:
        for configured in self.auth["api_keys"]:
            if hmac.compare_digest(presented.encode(), configured.encode()):
                return key_id(configured)
        return None

    def issue_token(self, subject: str) -> tuple[str, int]:
        minutes = int(self.auth.get("access_token_expire_minutes", 30))
        now = datetime.now(timezone.utc)
        claims = {"sub": subject, "iat": now, "exp": now + timedelta(minutes=minutes), "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self.auth["secret_key"], algorithm=self.auth.get("algorithm", "HS256"))
        return token, minutes * 60

    def verify_token(self, token: str) -> str:
        """The key id a valid token was issued to; raises ValueError with the reason otherwise."""
        algorithm = self.auth.get("algorithm", "HS256")
        for secret in [self.auth["secret_key"], *(self.auth.get("previous_secret_keys") or [])]:
            try:
                claims = jwt.decode(token, secret, algorithms=[algorithm], options={"require": ["exp", "sub"]})
            except jwt.ExpiredSignatureError as exc:
                raise ValueError("expired_token") from exc
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as exc:
                raise ValueError("malformed_token") from exc
            # A token outlives nothing: once its key is removed from the config it stops working.
            if claims["sub"] not in {key_id(key) for key in self.auth["api_keys"]}:
                raise ValueError("revoked_key")
            return claims["sub"]
        raise ValueError("bad_signature")


def check_config_mode(home: Home) -> None:
    mode = stat.S_IMODE(home.config.stat().st_mode)
    if mode & 0o077:
        log.warning("Configuration file %s holds secrets but has mode %04o (expected 0600)", home.config, mode)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "-"


def unverified_subject(token: str) -> str:
    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("sub", "-"))[:32]
    except jwt.InvalidTokenError:
        return "-"


def authenticate(service: Service, request: Request) -> str:
    """Accept ``Authorization: Bearer <JWT>`` or ``X-API-Key``; returns the caller's key id or raises 401."""
    header = request.headers.get("authorization", "")
    api_key = request.headers.get("x-api-key")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
        try:
            subject = service.verify_token(token)
        except ValueError as exc:
            reject(service, request, unverified_subject(token), str(exc))
    elif api_key:
        subject = service.match_api_key(api_key)
        if subject is None:
            reject(service, request, key_id(api_key), "invalid_api_key")
    else:
        reject(service, request, "-", "missing_credentials")
    request.state.key_id = subject
    return subject


def reject(service: Service, request: Request, presented: str, reason: str) -> NoReturn:
    service.metrics.auth_failures.labels(reason).inc()
    auth_log.warning("auth_failure ip=%s key=%s reason=%s path=%s", client_ip(request), presented, reason,
                     request.url.path)
    raise HTTPException(status_code=401, detail="invalid or missing credentials",
                        headers={"WWW-Authenticate": "Bearer"})


def risk_level(probability: float) -> str:
    return "low" if probability < 0.3 else "medium" if probability < 0.7 else "high"


def create_app(home: Home, config: dict) -> FastAPI:
    service = Service(home, config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, service.reload)
        loop.add_signal_handler(signal.SIGUSR2, crash)
        write_pid(home, "api")
        bound = getattr(_app.state, "bind", None)
        if bound:
            write_json(home.run / "api.json", {"pid": os.getpid(), "host": bound[0], "port": bound[1]})
        log.info("Heart Disease Prediction API %s started (pid %d)", API_VERSION, os.getpid())
        try:
            yield
        finally:
            remove_pid(home, "api")
            log.info("Heart Disease Prediction API stopped")

    app = FastAPI(title="Heart Disease Prediction API", version=API_VERSION, lifespan=lifespan)
    app.state.service = service

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.key_id = "-"
        status = 500
        try:
            blocked = service.blocked_network(client_ip(request))
            if blocked:
                service.metrics.blocked.inc()
                auth_log.warning("request_blocked ip=%s network=%s path=%s", client_ip(request), blocked, request.url.path)
                status = 403
                return JSONResponse({"detail": "forbidden"}, status_code=403)
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-ID"] = request.state.request_id
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = request.scope.get("route")
            handler = getattr(route, "path", "none")
            service.metrics.requests.labels(request.method, handler, str(status)).inc()
            service.metrics.latency.labels(request.method, handler, str(status)).observe(elapsed)
            access_log.info("request ip=%s method=%s path=%s status=%d duration_ms=%.1f request_id=%s key=%s",
                            client_ip(request), request.method, request.url.path, status, elapsed * 1000,
                            request.state.request_id, request.state.key_id)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(error.get("loc", ())), "msg": error.get("msg", "")} for error in exc.errors()]
        if request.url.path.startswith("/predict"):
            service.metrics.prediction_errors.labels("validation").inc()
            log.warning("prediction_rejected request_id=%s ip=%s errors=%s", request.state.request_id,
                        client_ip(request), json.dumps(errors))
        return JSONResponse(status_code=422, content={"detail": errors})

    def caller(request: Request) -> str:
        # As a dependency it runs before body validation: a bad key gets 401, not 422.
        return authenticate(service, request)

    def score(request: Request, rows: list[dict]) -> np.ndarray:
        if service.model is None:
            service.metrics.prediction_errors.labels("model_unavailable").inc()
            raise HTTPException(status_code=503, detail=f"model not loaded: {service.model_error}")
        X = np.array([[row[name] for name in FEATURE_NAMES] for row in rows], dtype=float)
        try:
            probabilities = service.model.predict_proba(X)
        except Exception as exc:  # whatever a broken model raises, the caller gets a 500 and the log the cause
            service.metrics.prediction_errors.labels("inference").inc()
            model_log.exception("Inference failed request_id=%s", request.state.request_id)
            raise HTTPException(status_code=500, detail="prediction failed") from exc
        if not np.all(np.isfinite(probabilities)):
            service.metrics.prediction_errors.labels("inference").inc()
            model_log.error("Inference returned non-finite probabilities request_id=%s", request.state.request_id)
            raise HTTPException(status_code=500, detail="prediction failed")
        return probabilities

    def record(request: Request, rows: list[dict], probabilities: np.ndarray, started: float) -> list[dict]:
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        results = []
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for index, (row, probability) in enumerate(zip(rows, probabilities)):
            probability = round(float(probability), 4)
            predicted = int(probability >= service.threshold)
            service.metrics.predictions.labels(str(predicted)).inc()
            service.metrics.probability.observe(probability)
            results.append({"prediction": predicted, "probability": probability, "risk_level": risk_level(probability)})
            prediction_log.info(json.dumps({
                "timestamp": now, "request_id": request.state.request_id, "index": index,
                "model_version": service.model.version if service.model else None,
                "client_ip": client_ip(request), "key": request.state.key_id, "features": row,
                "probability": probability, "prediction": predicted, "latency_ms": latency_ms,
            }, separators=(",", ":")))
        return results

    @app.post("/auth/token")
    async def token(request: Request, body: TokenRequest | None = None):
        presented = (body.api_key if body else None) or request.headers.get("x-api-key")
        if not presented:
            reject(service, request, "-", "missing_credentials")
        subject = service.match_api_key(presented)
        if subject is None:
            reject(service, request, key_id(presented), "invalid_api_key")
        request.state.key_id = subject
        access_token, expires_in = service.issue_token(subject)
        service.metrics.tokens_issued.inc()
        auth_log.info("token_issued ip=%s key=%s expires_in=%d", client_ip(request), subject, expires_in)
        return {"access_token": access_token, "token_type": "bearer", "expires_in": expires_in}

    @app.post("/predict")
    async def predict(request: Request, features: PatientFeatures, _key: str = Depends(caller)):  # type: ignore[valid-type]
        started = time.perf_counter()
        delay = service.injected_delay()
        if delay:
            await asyncio.sleep(delay)
        row = features.model_dump()
        probabilities = score(request, [row])
        result = record(request, [row], probabilities, started)[0]
        return {**result, "model_version": service.model.version, "request_id": request.state.request_id}

    @app.post("/predict/batch")
    async def predict_batch(request: Request, batch: BatchRequest, _key: str = Depends(caller)):
        limit = int(service.config["api"].get("batch_max_size", 1000))
        if len(batch.instances) > limit:
            service.metrics.prediction_errors.labels("batch_too_large").inc()
            raise HTTPException(status_code=413, detail=f"batch of {len(batch.instances)} exceeds batch_max_size {limit}")
        started = time.perf_counter()
        delay = service.injected_delay()
        if delay:
            await asyncio.sleep(delay)
        rows = [instance.model_dump() for instance in batch.instances]
        probabilities = score(request, rows)
        results = record(request, rows, probabilities, started)
        return {"predictions": results, "count": len(results), "model_version": service.model.version,
                "request_id": request.state.request_id}

    @app.get("/health")
    async def health():
        files = {relative: home.path(relative).is_file() for relative in VERSION_FILES}
        logs_writable = os.access(home.logs, os.W_OK)
        heartbeat = home.run / "worker.heartbeat"
        try:
            worker_age = round(time.time() - heartbeat.stat().st_mtime, 1)
        except FileNotFoundError:
            worker_age = None
        healthy = service.model is not None and all(files.values()) and logs_writable
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "model_loaded": service.model is not None,
            "model_version": service.model.version if service.model else None,
            "model_error": service.model_error,
            "dependencies": {"model_files": files, "config": "ok", "logs_writable": logs_writable,
                             "worker_heartbeat_age_seconds": worker_age},
            "uptime_seconds": round(time.time() - service.started_at, 1),
            "api_version": API_VERSION,
        }
        return JSONResponse(status_code=200 if healthy else 503, content=body)

    @app.get("/models/info")
    async def models_info(request: Request, _key: str = Depends(caller)):
        on_disk = {}
        for relative in VERSION_FILES:
            path = home.path(relative)
            if path.is_file():
                info = path.stat()
                on_disk[relative] = {"sha256": sha256_file(path), "size": info.st_size,
                                     "mtime": datetime.fromtimestamp(info.st_mtime, timezone.utc).isoformat()}
            else:
                on_disk[relative] = None
        loaded = service.model
        return {
            "version": loaded.version if loaded else None,
            "loaded": loaded is not None,
            "load_error": service.model_error,
            "model_type": modeling.model_type(loaded.model) if loaded else None,
            "metrics": (loaded.evaluation.get("metrics") if loaded else None),
            "trained_at": loaded.evaluation.get("trained_at") if loaded else None,
            "training_seed": loaded.evaluation.get("training_seed") if loaded else None,
            "loaded_at": datetime.fromtimestamp(service.loaded_at, timezone.utc).isoformat() if loaded and service.loaded_at else None,
            "loaded_file_hashes": loaded.file_hashes if loaded else {},
            "files": on_disk,
            "feature_names": FEATURE_NAMES,
            "decision_threshold": service.threshold,
        }

    @app.get("/version")
    async def version():
        return {"api_version": API_VERSION, "model_version": service.model.version if service.model else None,
                "python": platform.python_version(), "libraries": modeling.library_versions()}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def crash() -> None:
    """What the crashed-API fault triggers (SIGUSR2): a fatal error that takes the process down with status 1."""
    log.critical("Unrecoverable error in inference runtime: MemoryError while allocating batch buffers; exiting")
    logging.shutdown()
    os._exit(1)


def setup_prediction_log(home: Home) -> None:
    handler = logging.handlers.WatchedFileHandler(home.logs / "predictions.log")
    handler.setFormatter(logging.Formatter("%(message)s"))
    prediction_log.addHandler(handler)
    prediction_log.propagate = False
    prediction_log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.heart_disease.api", description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="installation directory made by lab.heart_disease.build")
    parser.add_argument("--host", default=None, help="bind address (default: api.host in the config, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: api.port in the config, else 18101)")
    args = parser.parse_args(argv)
    home = Home.of(args.home)
    setup_logging(home.logs / "api.log")
    setup_prediction_log(home)
    try:
        config = load_config(home)
        check_config_mode(home)
    except ConfigError as exc:
        log.critical("Cannot start: %s", exc)
        return 1
    host = args.host or config["api"].get("host", "127.0.0.1")
    port = args.port or int(config["api"].get("port", 18101))
    app = create_app(home, config)
    app.state.bind = (host, port)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=5))
    server.run()
    # uvicorn returns normally when it could not bind; that is a failed start.
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
