"""The Heart Disease tests share the lab harness (molecule/shared/harness.py) and a few ML helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from harness import *  # noqa: E402,F401,F403  pylint: disable=wildcard-import,unused-wildcard-import,wrong-import-position
from harness import LAB_STATE, PORT_OFFSET, lab  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ["local://"]

# /opt/heart-disease inside ml1 is this directory on the machine (docs/lab.md).
HOME = LAB_STATE / "hosts" / "ml1" / "heart-disease"
API_URL = f"http://127.0.0.1:{18101 + PORT_OFFSET}"
FLOOR = {"accuracy": 0.80, "roc_auc": 0.85, "f1": 0.75}


def live_version() -> str:
    return (HOME / "models" / "VERSION").read_text(encoding="utf-8").strip()


def backups() -> list[str]:
    """Backed-up versions, oldest first (version ids sort by age)."""
    return sorted(p.name[len("backup_"):-len(".tar.gz")] for p in (HOME / "backups").glob("backup_*.tar.gz"))


def model_state() -> dict[str, object]:
    """What a model remediation would change: the live version, the live files' bytes, the backups."""
    import hashlib  # pylint: disable=import-outside-toplevel
    files = {rel: hashlib.sha256((HOME / rel).read_bytes()).hexdigest() if (HOME / rel).is_file() else None
             for rel in ("models/sklearn_mlp_model.joblib", "models/evaluation_results.joblib", "data/processed/preprocessor.joblib")}
    return {"version": live_version(), "files": files, "backups": backups()}


def served_version() -> str | None:
    import requests  # pylint: disable=import-outside-toplevel
    response = requests.get(f"{API_URL}/health", timeout=10)
    return response.json().get("model_version")


def manifest_metrics(version: str) -> dict[str, float]:
    import tarfile  # pylint: disable=import-outside-toplevel
    with tarfile.open(HOME / "backups" / f"backup_{version}.tar.gz") as archive:
        return json.load(archive.extractfile("manifest.json"))["metrics"]


@pytest.fixture(name="good_model", autouse=True)
def good_model_fixture():
    """Every test starts and ends with a good model live and served (a failed test must not leave a bad one)."""
    yield
    version = live_version()
    metrics = manifest_metrics(version) if (HOME / "backups" / f"backup_{version}.tar.gz").is_file() else {}
    if not metrics or any(metrics.get(k, 0) < v for k, v in FLOOR.items()):
        lab("fault", "bad_model", "off")


def manifest_files(version: str) -> dict[str, str]:
    import tarfile  # pylint: disable=import-outside-toplevel
    with tarfile.open(HOME / "backups" / f"backup_{version}.tar.gz") as archive:
        return json.load(archive.extractfile("manifest.json"))["files"]
