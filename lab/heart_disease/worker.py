"""The background worker: batch scoring from a queue directory and monitoring of the prediction log.

    python -m lab.heart_disease.worker --home DIR [--port 18102] [--host 127.0.0.1]

- Batch jobs: ``queue/incoming/<job>.json`` = ``{"instances": [{13 features}, ...]}``; results go to
  ``queue/done/<job>.result.json`` (the job file moves to ``done/``), bad jobs to ``queue/failed/`` with
  ``<job>.error.txt``. While the model cannot be loaded, jobs wait in ``incoming/`` (the backlog grows).
- Monitoring: follows ``logs/predictions.log`` and compares the last N inputs with the training
  reference (``data/processed/reference_stats.json``): per-feature standardized mean shift.
- Heartbeat: ``run/worker.heartbeat`` (JSON, rewritten every poll). HTTP: ``/metrics`` and ``/health``.

Needs the model files at start: without a loadable model it exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, PlatformCollector, ProcessCollector,
                               generate_latest)

from . import modeling
from .common import VERSION_FILES, ConfigError, Home, load_config, remove_pid, setup_logging, write_json, write_pid
from .dataset import FEATURE_NAMES, VALID_RANGES

log = logging.getLogger("heart_disease.worker")
DRIFT_WARNING = 0.5  # standardized mean shift that counts as drift


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        registry = self.registry
        self.heartbeat = Gauge("heart_disease_worker_heartbeat_timestamp_seconds", "Last completed poll loop", registry=registry)
        self.up = Gauge("heart_disease_worker_up", "1 while the worker loop runs with a model loaded", registry=registry)
        self.model_loaded = Gauge("heart_disease_worker_model_loaded", "1 if the worker has a model loaded", registry=registry)
        self.model_info = Gauge("heart_disease_worker_model_info", "The model the worker scores with", ["version"],
                                registry=registry)
        self.jobs = Counter("heart_disease_worker_jobs_total", "Batch jobs by outcome", ["status"], registry=registry)
        self.rows = Counter("heart_disease_worker_rows_scored_total", "Rows scored by batch jobs", registry=registry)
        self.queue_depth = Gauge("heart_disease_worker_queue_depth", "Jobs waiting in queue/incoming", registry=registry)
        self.errors = Counter("heart_disease_worker_errors_total", "Worker errors by stage", ["stage"], registry=registry)
        self.monitored = Counter("heart_disease_worker_predictions_monitored_total", "Prediction log lines read",
                                 registry=registry)
        self.drift = Gauge("heart_disease_feature_drift_score",
                           "Standardized shift of the recent mean of a feature from the training mean", ["feature"],
                           registry=registry)
        self.positive_rate = Gauge("heart_disease_recent_positive_rate", "Share of class 1 in the recent predictions",
                                   registry=registry)
        self.mean_probability = Gauge("heart_disease_recent_mean_probability", "Mean predicted probability, recent window",
                                      registry=registry)


class Worker:
    def __init__(self, home: Home, config: dict) -> None:
        self.home = home
        self.config = config
        self.metrics = WorkerMetrics()
        self.stop = threading.Event()
        self.model: modeling.LoadedModel | None = None
        self.model_error: str | None = None
        self._model_signature = None
        self.status = "starting"
        self.jobs_done = 0
        settings = config.get("worker") or {}
        self.poll_interval = float(settings.get("poll_interval_seconds", 1.0))
        self.window = deque(maxlen=int(settings.get("drift_window", 200)))
        self.drift_scores: dict[str, float] = {}
        self._drifting: set[str] = set()
        self._log_position: tuple[int, int] | None = None  # (inode, offset) in predictions.log
        try:
            self.reference = json.loads(home.reference_stats.read_text())
        except (OSError, ValueError):
            self.reference = {}
            log.warning("No reference statistics at %s: drift monitoring disabled", home.reference_stats)

    # -- model -------------------------------------------------------------------------------
    def _signature(self):
        paths = [self.home.path(relative) for relative in VERSION_FILES] + [self.home.version_file]
        signature = []
        for path in paths:
            try:
                info = path.stat()
                signature.append((info.st_mtime_ns, info.st_size, info.st_ino))
            except FileNotFoundError:
                signature.append(None)
        return tuple(signature)

    def refresh_model(self) -> None:
        """(Re)load the model when its files change on disk."""
        signature = self._signature()
        if signature == self._model_signature:
            return
        self._model_signature = signature
        try:
            self.model = modeling.load(self.home)
        except modeling.ModelLoadError as exc:
            self.model, self.model_error = None, str(exc)
            self.metrics.errors.labels("model_load").inc()
            self.metrics.model_loaded.set(0)
            self.metrics.model_info.clear()
            log.error("Model unavailable, batch jobs will wait: %s", exc)
            return
        self.model_error = None
        self.metrics.model_loaded.set(1)
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(self.model.version).set(1)
        log.info("Worker loaded model version %s", self.model.version)

    # -- batch jobs --------------------------------------------------------------------------
    def process_queue(self) -> None:
        incoming = sorted((self.home.queue / "incoming").glob("*.json"))
        self.metrics.queue_depth.set(len(incoming))
        if self.model is None:
            return
        for job in incoming:
            if self.stop.is_set():
                return
            self.process_job(job)
        self.metrics.queue_depth.set(len(list((self.home.queue / "incoming").glob("*.json"))))

    def process_job(self, job: Path) -> None:
        started = time.perf_counter()
        try:
            rows = parse_job(job)
            X = np.array([[row[name] for name in FEATURE_NAMES] for row in rows], dtype=float)
            probabilities = self.model.predict_proba(X)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.metrics.jobs.labels("failed").inc()
            self.metrics.errors.labels("job").inc()
            log.error("Batch job %s failed: %s", job.name, exc)
            (self.home.queue / "failed" / f"{job.stem}.error.txt").write_text(f"{exc}\n")
            os.replace(job, self.home.queue / "failed" / job.name)
            return
        threshold = float((self.config.get("model") or {}).get("decision_threshold", 0.5))
        result = {
            "job_id": job.stem,
            "model_version": self.model.version,
            "count": len(rows),
            "predictions": [{"probability": round(float(p), 4), "prediction": int(p >= threshold)} for p in probabilities],
        }
        write_json(self.home.queue / "done" / f"{job.stem}.result.json", result)
        os.replace(job, self.home.queue / "done" / job.name)
        self.jobs_done += 1
        self.metrics.jobs.labels("succeeded").inc()
        self.metrics.rows.inc(len(rows))
        log.info("Batch job %s scored %d rows with model %s in %.1f ms", job.name, len(rows), self.model.version,
                 (time.perf_counter() - started) * 1000)

    # -- prediction log monitoring -----------------------------------------------------------
    def follow_predictions(self) -> None:
        path = self.home.logs / "predictions.log"
        try:
            info = path.stat()
        except FileNotFoundError:
            return
        inode, offset = self._log_position or (info.st_ino, max(0, info.st_size - 256 * 1024))
        if inode != info.st_ino or offset > info.st_size:  # rotated or truncated
            offset = 0
        with path.open("rb") as handle:
            handle.seek(offset)
            if offset and self._log_position is None:
                handle.readline()  # started mid-file: skip the partial line
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break
                offset = handle.tell()
                self.observe_prediction(raw)
            else:
                offset = handle.tell()
        self._log_position = (info.st_ino, offset)
        self.update_drift()

    def observe_prediction(self, raw: bytes) -> None:
        try:
            record = json.loads(raw)
            features = record["features"]
            self.window.append(([float(features[name]) for name in FEATURE_NAMES],
                                float(record["probability"]), int(record["prediction"])))
            self.metrics.monitored.inc()
        except (ValueError, KeyError, TypeError):
            self.metrics.errors.labels("prediction_log").inc()

    def update_drift(self) -> None:
        if not self.window or not self.reference:
            return
        features = np.array([entry[0] for entry in self.window])
        self.metrics.positive_rate.set(float(np.mean([entry[2] for entry in self.window])))
        self.metrics.mean_probability.set(float(np.mean([entry[1] for entry in self.window])))
        for index, name in enumerate(FEATURE_NAMES):
            reference = self.reference.get(name)
            if not reference:
                continue
            score = (float(features[:, index].mean()) - reference["mean"]) / (reference["std"] or 1.0)
            self.drift_scores[name] = round(score, 3)
            self.metrics.drift.labels(name).set(score)
            drifting = abs(score) > DRIFT_WARNING and len(self.window) >= min(50, self.window.maxlen)
            if drifting and name not in self._drifting:
                log.warning("drift_detected feature=%s shift=%.2f window=%d", name, score, len(self.window))
                self._drifting.add(name)
            elif not drifting and name in self._drifting:
                log.info("drift_cleared feature=%s shift=%.2f window=%d", name, score, len(self.window))
                self._drifting.discard(name)

    # -- loop --------------------------------------------------------------------------------
    def beat(self) -> None:
        self.status = "ok" if self.model is not None else "degraded"
        now = time.time()
        self.metrics.heartbeat.set(now)
        self.metrics.up.set(1 if self.model is not None else 0)
        write_json(self.home.run / "worker.heartbeat", self.health(now))

    def health(self, now: float | None = None) -> dict:
        return {
            "timestamp": now or time.time(), "pid": os.getpid(), "status": self.status,
            "model_version": self.model.version if self.model else None, "model_error": self.model_error,
            "jobs_processed": self.jobs_done,
            "queue_depth": len(list((self.home.queue / "incoming").glob("*.json"))),
            "drift_scores": self.drift_scores, "drifting_features": sorted(self._drifting),
        }

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.refresh_model()
                self.process_queue()
                self.follow_predictions()
            except Exception:  # one bad cycle must not end the worker; the next poll tries again
                self.metrics.errors.labels("loop").inc()
                log.exception("Worker cycle failed")
            self.beat()
            self.stop.wait(self.poll_interval)


def parse_job(job: Path) -> list[dict]:
    body = json.loads(job.read_text(encoding="utf-8"))
    rows = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ValueError("job must be an object with a non-empty 'instances' list")
    for number, row in enumerate(rows):
        missing = [name for name in FEATURE_NAMES if name not in row]
        if missing:
            raise ValueError(f"instance {number} lacks {', '.join(missing)}")
        for name in FEATURE_NAMES:
            low, high = VALID_RANGES[name]
            if not low <= float(row[name]) <= high:
                raise ValueError(f"instance {number}: {name}={row[name]} is outside {low}..{high}")
    return rows


def make_http_handler(worker: Worker):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] == "/metrics":
                self._send(200, generate_latest(worker.metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path.split("?")[0] == "/health":
                body = worker.health()
                self._send(200 if body["status"] == "ok" else 503, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b'{"detail": "not found"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            return  # scrapes every few seconds would drown the worker log

    return Handler


def crash(_signum, _frame) -> None:
    """What the failed-worker fault triggers (SIGUSR2): a fatal error, exit status 1."""
    log.critical("Unhandled exception in job loop: OSError: [Errno 5] Input/output error reading queue; worker exiting")
    logging.shutdown()
    os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.heart_disease.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="installation directory made by lab.heart_disease.build")
    parser.add_argument("--host", default="127.0.0.1", help="bind address for /metrics and /health")
    parser.add_argument("--port", type=int, default=None, help="port (default: worker.port in the config, else 18102)")
    args = parser.parse_args(argv)
    home = Home.of(args.home)
    setup_logging(home.logs / "worker.log")
    try:
        config = load_config(home)
    except ConfigError as exc:
        log.critical("Cannot start: %s", exc)
        return 1
    for sub in ("incoming", "done", "failed"):
        (home.queue / sub).mkdir(parents=True, exist_ok=True)
    worker = Worker(home, config)
    worker.refresh_model()
    if worker.model is None:
        log.critical("Cannot start: model files unusable: %s", worker.model_error)
        return 1
    port = args.port or int((config.get("worker") or {}).get("port", 18102))
    try:
        server = ThreadingHTTPServer((args.host, port), make_http_handler(worker))
    except OSError as exc:
        log.critical("Cannot listen on %s:%d: %s", args.host, port, exc)
        return 1
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()

    def request_stop(signum, _frame):
        log.info("Signal %d received: stopping", signum)
        worker.stop.set()

    def reload_config(_signum, _frame):
        try:
            worker.config = load_config(home)
            log.info("Configuration reloaded")
        except ConfigError as exc:
            log.error("Configuration reload failed, keeping the previous one: %s", exc)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, reload_config)
    signal.signal(signal.SIGUSR2, crash)
    write_pid(home, "worker")
    log.info("Heart Disease worker started (pid %d, metrics on %s:%d)", os.getpid(), args.host, port)
    try:
        worker.run()
    finally:
        server.shutdown()
        remove_pid(home, "worker")
        log.info("Heart Disease worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
