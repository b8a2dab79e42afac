"""The Heart Disease Prediction stand-in (lab/heart_disease): build, API, worker and every fault, for real.

One installation is built into a temporary directory; the API and the worker run as real processes on
free loopback ports; faults are switched through ``lab.heart_disease.faults`` as the lab CLI does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from lab.heart_disease import dataset, faults, modeling, versions  # noqa: E402
from lab.heart_disease.common import QUALITY_FLOOR, VERSION_FILES, Home, key_id, load_config  # noqa: E402

pytestmark = pytest.mark.integration

PATIENT = {"age": 63, "sex": 1, "cp": 0, "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 0, "thalach": 150,
           "exang": 0, "oldpeak": 2.3, "slope": 0, "ca": 0, "thal": 1}
API_METRICS = ("http_requests_total", "http_request_duration_seconds_bucket", "heart_disease_predictions_total",
               "heart_disease_prediction_errors_total", "heart_disease_model_info", "heart_disease_model_loaded",
               "auth_failures_total", "process_cpu_seconds_total")
WORKER_METRICS = ("heart_disease_worker_heartbeat_timestamp_seconds", "heart_disease_worker_jobs_total",
                  "heart_disease_worker_queue_depth", "heart_disease_feature_drift_score",
                  "heart_disease_worker_model_info")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - [\w.]+ - (DEBUG|INFO|WARNING|ERROR|CRITICAL) - .+")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric_value(text: str, name: str, **labels) -> float | None:
    """The value of one sample in Prometheus text output, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


class Lab:
    """One built installation with its API and worker processes (restarted on demand after a crash test)."""

    def __init__(self, root: Path) -> None:
        self.home = Home.of(root / "home")
        self.api_port, self.worker_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.worker_url = f"http://127.0.0.1:{self.worker_port}"
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.procs: dict[str, subprocess.Popen] = {}
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "lab.heart_disease.build", "--home", str(self.home.root),
                              "--api-port", str(self.api_port), "--worker-port", str(self.worker_port)],
                             cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=60, check=True)
        self.build_seconds = time.monotonic() - started
        self.build_summary = json.loads(out.stdout)
        config = load_config(self.home)
        self.api_key, self.partner_key = config["api"]["auth"]["api_keys"][:2]

    def start(self, service: str) -> subprocess.Popen:
        port = self.api_port if service == "api" else self.worker_port
        log = (self.home.root / f"{service}.stderr").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", f"lab.heart_disease.{service}", "--home", str(self.home.root),
                                 "--port", str(port)], cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log)
        self.procs[service] = proc
        url = (self.api_url if service == "api" else self.worker_url) + "/health"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{service} exited with {proc.returncode}: {self.stderr(service)}"
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return proc
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{service} did not become healthy: {self.stderr(service)}")

    def ensure(self, service: str) -> subprocess.Popen:
        proc = self.procs.get(service)
        return proc if proc is not None and proc.poll() is None else self.start(service)

    def stderr(self, service: str) -> str:
        return (self.home.root / f"{service}.stderr").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def predict(self, body=None, **headers) -> requests.Response:
        headers = headers or {"X-API-Key": self.api_key}
        return requests.post(f"{self.api_url}/predict", json=body or PATIENT, headers=headers, timeout=30)

    def api_log(self) -> str:
        return (self.home.logs / "api.log").read_text()

    def sample_metrics(self) -> dict:
        X, y = dataset.read_csv(self.home.sample)
        loaded = modeling.load(self.home)
        return modeling.evaluate(loaded.preprocessor, loaded.model, X, y)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("heart_disease"))
    try:
        lab.start("api")
        lab.start("worker")
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def running(lab):
    lab.ensure("api")
    lab.ensure("worker")
    return lab


def test_build_is_fast_and_reports_two_good_versions(lab):
    assert lab.build_seconds < 20
    summary = lab.build_summary
    assert summary["built"] is True and len(summary["versions"]) >= 2
    for version, metrics in summary["versions"].items():
        assert not modeling.below_floor(metrics), f"{version}: {metrics}"
    assert versions.current_version(lab.home) == summary["current"]


def test_layout_config_and_manifests(lab):
    for relative in VERSION_FILES:
        assert lab.home.path(relative).is_file(), relative
    assert lab.home.sample.is_file()
    assert (lab.home.config.stat().st_mode & 0o777) == 0o600
    listed = versions.list_versions(lab.home)
    assert len(listed) >= 2 and versions.current_version(lab.home) in listed
    # the live files are exactly the current version's, and every archive is self-consistent
    assert versions.verify_live(lab.home) == {}
    for version in listed:
        with tarfile.open(versions.archive_path(lab.home, version)) as archive:
            manifest = json.load(archive.extractfile("manifest.json"))
            assert manifest["version"] == version
            assert set(manifest["files"]) == set(VERSION_FILES)
            assert set(manifest["metrics"]) >= {"accuracy", "roc_auc", "f1"}
            for relative, digest in manifest["files"].items():
                assert hashlib.sha256(archive.extractfile(relative).read()).hexdigest() == digest


def test_quality_floor_on_the_validation_sample(lab):
    metrics = lab.sample_metrics()
    assert not modeling.below_floor(metrics), metrics
    # the same through the API: the sample scored by /predict/batch
    X, y = dataset.read_csv(lab.home.sample)
    rows = [dataset.row_to_dict(row) for row in X]
    response = requests.post(f"{lab.api_url}/predict/batch", json={"instances": rows},
                             headers={"X-API-Key": lab.api_key}, timeout=30)
    assert response.status_code == 200
    predicted = [item["prediction"] for item in response.json()["predictions"]]
    accuracy = sum(int(p == t) for p, t in zip(predicted, y)) / len(y)
    assert accuracy >= QUALITY_FLOOR["accuracy"]


def test_token_then_predict_and_batch(running):
    token = requests.post(f"{running.api_url}/auth/token", json={"api_key": running.api_key}, timeout=10)
    assert token.status_code == 200
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    result = running.predict(**bearer)
    assert result.status_code == 200
    body = result.json()
    assert 0.0 <= body["probability"] <= 1.0
    assert body["prediction"] == int(body["probability"] >= 0.5)
    assert body["model_version"] == versions.current_version(running.home)
    batch = requests.post(f"{running.api_url}/predict/batch", json={"instances": [PATIENT, {**PATIENT, "age": 40}]},
                          headers=bearer, timeout=10)
    assert batch.status_code == 200 and batch.json()["count"] == 2
    record = json.loads((running.home.logs / "predictions.log").read_text().splitlines()[-1])
    assert record["request_id"] == batch.json()["request_id"] and record["features"]["age"] == 40
    assert set(record) >= {"timestamp", "probability", "prediction", "latency_ms", "model_version"}


def test_rejects_bad_credentials_and_bad_input(running):
    assert running.predict(**{"X-API-Key": "hdk_notakey000000"}).status_code == 401
    assert running.predict(**{"Authorization": "Bearer not.a.jwt"}).status_code == 401
    assert "auth_failure ip=127.0.0.1 key=hdk_notakey0 reason=invalid_api_key" in running.api_log()
    assert running.predict({**PATIENT, "age": 500}).status_code == 422
    assert running.predict({**PATIENT, "thal": 9}).status_code == 422
    for line in running.api_log().splitlines():
        assert LOG_LINE.match(line), line


def test_metrics_health_version_and_model_info(running):
    api_metrics = requests.get(f"{running.api_url}/metrics", timeout=10).text
    for name in API_METRICS:
        assert name in api_metrics, name
    current = versions.current_version(running.home)
    assert metric_value(api_metrics, "heart_disease_model_info", version=current) == 1.0
    worker_metrics = requests.get(f"{running.worker_url}/metrics", timeout=10).text
    for name in WORKER_METRICS:
        assert name in worker_metrics, name
    heartbeat = json.loads((running.home.run / "worker.heartbeat").read_text())
    assert heartbeat["status"] == "ok" and time.time() - heartbeat["timestamp"] < 10
    health = requests.get(f"{running.api_url}/health", timeout=10).json()
    assert health["status"] == "healthy" and health["model_version"] == current
    assert requests.get(f"{running.api_url}/version", timeout=10).json()["model_version"] == current
    assert requests.get(f"{running.api_url}/models/info", timeout=10).status_code == 401
    info = requests.get(f"{running.api_url}/models/info", headers={"X-API-Key": running.api_key}, timeout=10).json()
    manifest = versions.read_manifest(running.home, current)
    assert {path: entry["sha256"] for path, entry in info["files"].items()} == manifest["files"]


def test_worker_scores_a_queued_batch_job(running):
    job = running.home.queue / "incoming" / "job-001.json"
    job.write_text(json.dumps({"instances": [PATIENT] * 3}))
    result_file = running.home.queue / "done" / "job-001.result.json"
    deadline = time.monotonic() + 10
    while not result_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    result = json.loads(result_file.read_text())
    assert result["count"] == 3 and result["model_version"] == versions.current_version(running.home)


def test_latency_fault_makes_predict_slow(running):
    faults.apply(running.home, "latency", True)
    try:
        with ThreadPoolExecutor(8) as pool:
            durations = list(pool.map(lambda _: timed(running.predict), range(8)))
        assert statistics.quantiles(durations, n=20)[-1] > 1.0  # p95
        text = requests.get(f"{running.api_url}/metrics", timeout=10).text
        fast = metric_value(text, "http_request_duration_seconds_bucket", handler="/predict", le="1.0", status="200")
        total = metric_value(text, "http_request_duration_seconds_count", handler="/predict", status="200")
        assert total - fast >= 8
    finally:
        faults.apply(running.home, "latency", False)
    assert timed(running.predict) < 0.5


def timed(call) -> float:
    started = time.monotonic()
    assert call().status_code == 200
    return time.monotonic() - started


def test_drift_fault_shifts_logged_inputs_and_worker_sees_it(running):
    faults.apply(running.home, "drift", True)
    lines = (running.home.logs / "predictions.log").read_text().splitlines()[-200:]
    chol = statistics.mean(json.loads(line)["features"]["chol"] for line in lines)
    reference = json.loads(running.home.reference_stats.read_text())["chol"]["mean"]
    assert chol - reference > 40
    assert wait_for(lambda: (drift_score(running, "chol") or 0) > 0.5 and (drift_score(running, "thalach") or 0) < -0.5)
    faults.apply(running.home, "drift", False)
    assert wait_for(lambda: abs(drift_score(running, "chol") or 9) < 0.3)


def drift_score(lab, feature):
    text = requests.get(f"{lab.worker_url}/metrics", timeout=10).text
    return metric_value(text, "heart_disease_feature_drift_score", feature=feature)


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_leaked_credential_fault_leaks_and_sprays(running):
    entry = faults.apply(running.home, "leaked_credential", True, valid_requests=10, invalid_requests=8)
    leak = running.home.public / "leaked.txt"
    assert running.partner_key in leak.read_text() or entry["key"] in leak.read_text()
    log = running.api_log()
    leaked_id = key_id(entry["key"])
    odd = re.findall(rf"request ip=(127\.66\.6\.\d+) .* status=200 .* key={leaked_id}", log)
    assert len(odd) >= 10
    assert len(re.findall(r"auth_failure ip=127\.66\.6\.\d+ key=hdk_\w+ reason=invalid_api_key", log)) >= 8
    faults.apply(running.home, "leaked_credential", False)
    assert not leak.exists()
    # off does not rotate (that is the runbook's fix): the key still works ...
    assert running.predict(**{"X-API-Key": entry["key"]}).status_code == 200
    # ... until a full reset rotates it
    faults.apply(running.home, "leaked_credential", False, full=True)
    assert entry["key"] not in load_config(running.home)["api"]["auth"]["api_keys"]
    assert running.predict(**{"X-API-Key": entry["key"]}).status_code == 401
    running.api_key = load_config(running.home)["api"]["auth"]["api_keys"][0]


def test_bad_model_fault_deploys_a_version_under_the_floor(running):
    good = versions.current_version(running.home)
    entry = faults.apply(running.home, "bad_model", True)
    bad = entry["version"]
    assert versions.current_version(running.home) == bad and bad in versions.list_versions(running.home)
    assert versions.verify_live(running.home) == {}  # it looks like a real deploy
    assert modeling.below_floor(versions.read_manifest(running.home, bad)["metrics"])
    assert running.sample_metrics()["accuracy"] < QUALITY_FLOOR["accuracy"] - 0.15
    assert running.predict().json()["model_version"] == bad
    faults.apply(running.home, "bad_model", False)
    assert versions.current_version(running.home) == bad  # left for model recovery
    faults.apply(running.home, "bad_model", False, full=True)
    assert versions.current_version(running.home) == good and bad not in versions.list_versions(running.home)
    assert running.predict().json()["model_version"] == good


def test_corrupted_model_fault_breaks_the_manifest_hash(running):
    entry = faults.apply(running.home, "corrupt_model", True)
    mismatches = versions.verify_live(running.home)
    assert list(mismatches) == ["models/sklearn_mlp_model.joblib"]
    assert mismatches["models/sklearn_mlp_model.joblib"][1] == entry["sha256_after"]
    health = requests.get(f"{running.api_url}/health", timeout=10)
    assert health.status_code == 503 and health.json()["model_loaded"] is False
    assert running.predict().status_code == 503
    assert wait_for(lambda: requests.get(f"{running.worker_url}/health", timeout=5).status_code == 503)
    faults.apply(running.home, "corrupt_model", False, full=True)
    assert versions.verify_live(running.home) == {}
    assert requests.get(f"{running.api_url}/health", timeout=10).status_code == 200
    # the subtler variant: the file still loads but its weights are garbage
    faults.apply(running.home, "corrupt_model", True, mode="weights")
    assert versions.verify_live(running.home)
    assert running.sample_metrics()["accuracy"] < QUALITY_FLOOR["accuracy"]
    faults.apply(running.home, "corrupt_model", False, full=True)
    assert not modeling.below_floor(running.sample_metrics())


@pytest.mark.parametrize("fault, service", [("crash_api", "api"), ("fail_worker", "worker")])
def test_crash_faults_end_the_process_with_an_error(running, fault, service):
    proc = running.procs[service]
    faults.apply(running.home, fault, True)
    assert proc.wait(timeout=10) != 0
    last_lines = (running.home.logs / f"{service}.log").read_text().splitlines()[-3:]
    assert any(" - CRITICAL - " in line for line in last_lines), last_lines
    faults.apply(running.home, fault, False)
    running.start(service)  # what the runbook's restart does
    assert running.procs[service].poll() is None
