"""model_check against a running Heart Disease API (lab/heart_disease): the files on disk and what the API serves.

One installation is built into a temporary directory and its API started on a free port; the module scores the
labelled sample from the files and through /predict/batch, then the lab's bad_model fault deploys a bad version
for real and both views see it under the floor, with a rollback to the version before recommended.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ansible_collections.sre.runbooks.plugins.module_utils import _model_check as mc

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from lab.heart_disease import faults  # noqa: E402
from lab.heart_disease.common import Home, load_config  # noqa: E402

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(name="api", scope="module")
def api_fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("hd") / "home"
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-m", "lab.heart_disease.build", "--home", str(root), "--api-port", str(port),
                    "--worker-port", str(_free_port())], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=True)
    with (root / "api.stderr").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lab.heart_disease.api", "--home", str(root), "--port", str(port)],
                                cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (root / "api.stderr").read_text()[-2000:]
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "API not healthy"
            time.sleep(0.2)
        yield {"root": root, "url": url, "key": load_config(Home.of(root))["api"]["auth"]["api_keys"][0]}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _params(api, **overrides):
    base = {"home": str(api["root"]), "checks": ["files", "performance", "previous", "predictions"], "backup_dir": "backups",
            "archive_pattern": "backup_{version}.tar.gz", "version_file": "models/VERSION",
            "model_file": "models/sklearn_mlp_model.joblib", "preprocessor_file": "data/processed/preprocessor.joblib",
            "sample": "data/validation/sample.csv", "reference": "data/raw/heart.csv", "recent_data": None,
            "predictions_log": "logs/predictions.log", "api_log": "logs/api.log", "since_minutes": 15, "data_window": 200,
            "min_drift_rows": 50, "python": sys.executable, "service": "heart-disease-api", "floor": {}, "max_regression": 0.05,
            "psi_bands": [0.1, 0.25], "max_invalid_ratio": 0.05, "class_shift_threshold": 0.15, "decision_threshold": 0.5,
            "api_url": api["url"], "api_key": api["key"], "validate_certs": True, "timeout": 120, "module_python": sys.executable}
    return {**base, **overrides}


def test_files_and_served_model_agree_then_a_bad_model_is_caught(api):
    good = (api["root"] / "models" / "VERSION").read_text().strip()
    result = mc.run_checks(_params(api))
    assert result["verdict"]["status"] == "ok", result["verdict"]
    assert result["served"]["ok"] and result["served"]["model_version"] == good
    # The same model scored two ways gives the same numbers (the lab's table: 0.907 / 0.970 / 0.899 on the sample).
    assert result["served"]["metrics"]["accuracy"] == result["performance"]["metrics"]["accuracy"] >= 0.80
    assert result["predictions"]["count"] >= 300 and result["predictions"]["server_errors"] == 0

    faults.apply(Home.of(api["root"]), "bad_model", True)
    try:
        bad = mc.run_checks(_params(api))
        assert bad["version"] != good and bad["files"]["ok"]
        assert bad["verdict"]["status"] == "bad_model"
        assert bad["served"]["model_version"] == bad["version"] and bad["served"]["below_floor"]
        assert bad["recommendation"]["action"] == "rollback" and bad["recommendation"]["version"] == good
        wrong_key = mc.run_checks(_params(api, api_key="hdk_wrong", checks=["performance"]))
        assert "answered 401" in wrong_key["served"]["error"]
    finally:
        faults.apply(Home.of(api["root"]), "bad_model", False, full=True)
    assert json.loads(requests.get(f"{api['url']}/health", timeout=5).text)["model_version"] == good
