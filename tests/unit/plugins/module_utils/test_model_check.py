"""model_check: metrics, PSI, data quality and recommendations as tables; whole checks on real small scikit-learn models."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from ansible_collections.sre.runbooks.plugins.module_utils import _model_check as mc
from ansible_collections.sre.runbooks.plugins.modules import model_check as model_check_module
from lab.heart_disease import build, dataset, modeling, versions
from lab.heart_disease.common import MODEL_FILE, Home
from tests.unit.plugins.modules.utils import run_module

PARAMS = {"checks": list(mc.CHECKS), "backup_dir": "backups", "archive_pattern": "backup_{version}.tar.gz",
          "version_file": "models/VERSION", "model_file": "models/sklearn_mlp_model.joblib",
          "preprocessor_file": "data/processed/preprocessor.joblib", "sample": "data/validation/sample.csv",
          "reference": "data/raw/heart.csv", "recent_data": None, "predictions_log": "logs/predictions.log",
          "api_log": "logs/api.log", "since_minutes": 15, "data_window": 200, "min_drift_rows": 50, "python": sys.executable,
          "service": "heart-disease-api", "floor": {}, "max_regression": 0.05, "psi_bands": [0.1, 0.25], "max_invalid_ratio": 0.05,
          "class_shift_threshold": 0.15, "decision_threshold": 0.5, "api_url": None, "api_key": None, "validate_certs": True,
          "timeout": 120, "module_python": sys.executable}


# -- tables -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metrics_agree_with_scikit_learn(seed):
    rng = random.Random(seed)
    labels = [rng.randint(0, 1) for _index in range(200)]
    scores = [round(rng.random() * 0.6 + 0.4 * y, 2) for y in labels]  # rounded: many ties
    ours = mc.classification_metrics(labels, scores)
    predicted = [int(s >= 0.5) for s in scores]
    assert ours["accuracy"] == round(accuracy_score(labels, predicted), 4)
    assert ours["f1"] == round(f1_score(labels, predicted), 4)
    assert ours["roc_auc"] == round(roc_auc_score(labels, scores), 4)


@pytest.mark.parametrize("labels, scores, expected", [
    ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
    ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
    ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),
    ([1, 1, 1], [0.2, 0.4, 0.9], None),
])
def test_roc_auc_edges(labels, scores, expected):
    assert mc.roc_auc(labels, scores) == expected


@pytest.mark.parametrize("metrics, missing", [
    ({"accuracy": 0.9, "roc_auc": 0.95, "f1": 0.9}, []),
    ({"accuracy": 0.79, "roc_auc": 0.95, "f1": 0.9}, ["accuracy"]),
    ({"accuracy": 0.5, "roc_auc": None, "f1": 0.4}, ["accuracy", "roc_auc", "f1"]),
])
def test_below_floor(metrics, missing):
    assert [b["metric"] for b in mc.below_floor(metrics, mc.FLOOR)] == missing


@pytest.mark.parametrize("value, band", [(0.0, "stable"), (0.099, "stable"), (0.1, "moderate"), (0.249, "moderate"),
                                         (0.25, "significant"), (3.0, "significant")])
def test_psi_bands(value, band):
    assert mc.psi_band(value) == band


def test_psi_identical_is_zero_and_a_shift_is_significant():
    rng = random.Random(4)
    reference = [rng.gauss(240, 47) for _index in range(2000)]
    assert mc.psi(reference, reference, "int") == pytest.approx(0.0)
    same = [rng.gauss(240, 47) for _index in range(500)]
    shifted = [v + 70 for v in same]
    assert mc.psi(reference, same, "int") < 0.1
    assert mc.psi(reference, shifted, "int") > 0.25
    assert mc.psi([0, 1, 1, 0] * 50, [1] * 100, "cat") > 0.25


@pytest.mark.parametrize("row, problem", [
    ({"age": 63}, None),
    ({"age": None}, "missing"),
    ({"age": ""}, "missing"),
    ({"age": "sixty"}, "wrong_type"),
    ({"age": 63.5}, "wrong_type"),
    ({"cp": 1.5}, "wrong_type"),
    ({"oldpeak": 2.3}, None),
    ({"age": 150}, "out_of_range"),
    ({"chol": 50}, "out_of_range"),
    ({"thal": 4}, "out_of_range"),
])
def test_data_quality_table(row, problem):
    base = {"age": 63, "sex": 1, "cp": 0, "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 0, "thalach": 150,
            "exang": 0, "oldpeak": 2.3, "slope": 0, "ca": 0, "thal": 1}
    report = mc.data_quality([{**base, **row}, base])
    assert report["rows"] == 2
    if problem is None:
        assert report["invalid_rows"] == 0 and report["examples"] == []
    else:
        assert report["invalid_rows"] == 1 and report[problem] == {next(iter(row)): 1}
        assert report["examples"][0].startswith("row 1: " + next(iter(row)))


GOOD = {"accuracy": 0.85, "roc_auc": 0.94, "f1": 0.83}
BAD = {"accuracy": 0.52, "roc_auc": 0.55, "f1": 0.40}
BACKUPS = [{"version": "20261120T000000Z", "metrics": GOOD}, {"version": "20261121T000000Z", "metrics": GOOD},
           {"version": "20261122T000000Z", "metrics": BAD}]


@pytest.mark.parametrize("live, files_ok, load_ok, perf_ok, action, version", [
    ("20261121T000000Z", True, True, True, "none", "20261121T000000Z"),
    ("20261121T000000Z", False, False, None, "reinstall", "20261121T000000Z"),   # truncated file
    ("20261121T000000Z", False, True, False, "reinstall", "20261121T000000Z"),   # scrambled weights
    ("20261122T000000Z", True, True, False, "rollback", "20261121T000000Z"),     # bad version deployed
    ("20261122T000000Z", False, False, None, "rollback", "20261121T000000Z"),    # bad version, damaged too
    ("20261120T000000Z", True, True, False, "rollback", "20261121T000000Z"),     # nothing older: newest other good one
])
def test_recommendation_table(live, files_ok, load_ok, perf_ok, action, version):
    plan = mc.recommend(live, files_ok, load_ok, perf_ok, BACKUPS, mc.FLOOR)
    assert (plan["action"], plan["version"]) == (action, version)


def test_recommendation_escalates_without_a_good_version():
    plan = mc.recommend("20261122T000000Z", True, True, False, [BACKUPS[2]], mc.FLOOR)
    assert plan["action"] == "escalate" and plan["version"] is None


def test_unit_interpreter_parses_execstart(monkeypatch):
    monkeypatch.setattr(mc.shutil, "which", lambda _name: "/bin/systemctl")

    def fake(stdout):
        return lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=stdout, stderr="")
    line = "{ path=/opt/venv/bin/python3 ; argv[]=/opt/venv/bin/python3 -m app --port 1 ; ignore_errors=no }\n"
    assert mc.unit_interpreter("x", run=fake(line)) == "/opt/venv/bin/python3"
    assert mc.unit_interpreter("x", run=fake("{ path=/usr/bin/node ; argv[]=/usr/bin/node app.js }")) is None
    assert mc.unit_interpreter("x", run=fake("")) is None


def test_access_summary_and_prediction_summary(tmp_path):
    now = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    lines = []
    for i, (status, ms) in enumerate([(200, 5.0), (200, 7.0), (503, 2.0), (200, 1500.0), (401, 1.0)]):
        stamp = (now - timedelta(minutes=1, seconds=i)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{stamp},123 - heart_disease.access - INFO - request ip=127.0.0.1 method=POST path=/predict "
                     f"status={status} duration_ms={ms} request_id=x key=hdk_1")
    old = (now - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    lines.append(f"{old},1 - heart_disease.access - INFO - request ip=1 method=POST path=/predict status=500 duration_ms=1 request_id=y")
    lines.append(f"{old},1 - heart_disease.access - INFO - request ip=1 method=GET path=/health status=200 duration_ms=1 request_id=z")
    log = tmp_path / "api.log"
    log.write_text("\n".join(lines) + "\n")
    access = mc.access_summary(str(log), 15 * 60, now.timestamp())
    assert (access["requests"], access["server_errors"], access["client_errors"], access["error_rate"]) == (5, 1, 1, 0.2)
    assert access["latency_ms"]["max"] == 1500.0 and access["latency_ms"]["p50"] == 5.0
    entries = [{"prediction": 1, "probability": 0.9, "model_version": "a"}] * 8 + [{"prediction": 0, "probability": 0.1, "model_version": "b"}] * 2
    summary = mc.prediction_summary(entries, 0.46, 0.15, access)
    assert summary["positive_rate"] == 0.8 and summary["class_balance_shift"] == 0.34 and summary["class_balance_shifted"]
    assert summary["by_model_version"] == {"a": 8, "b": 2} and summary["error_rate"] == 0.2


# -- a real installation ------------------------------------------------------------------------------------

def _stage(home: Home, data: dict, created_at: datetime, shuffled: bool) -> str:
    X, y = data["train"]
    if shuffled:
        y = np.random.default_rng(99).permutation(y)
    preprocessor = modeling.make_preprocessor().fit(X)
    model = LogisticRegression(max_iter=500).fit(preprocessor.transform(X), y)
    metrics = modeling.evaluate(preprocessor, model, *data["test"])
    evaluation = {"metrics": metrics, "trained_at": created_at.isoformat()}
    return build.stage_version(home, preprocessor, model, evaluation, metrics, created_at, {"model_type": "LogisticRegression"})


@pytest.fixture(name="installation", scope="module")
def installation_fixture(tmp_path_factory):
    """A home like the lab's: two good versions, one trained on shuffled labels, the sample and the reference data."""
    root = tmp_path_factory.mktemp("hd")
    home = Home.of(root)
    data = build.splits()
    start = datetime(2026, 11, 23, 8, tzinfo=timezone.utc)
    older = _stage(home, data, start, shuffled=False)
    good = _stage(home, {**data, "train": (data["train"][0][:900], data["train"][1][:900])}, start + timedelta(hours=1), False)
    bad = _stage(home, data, start + timedelta(hours=2), shuffled=True)
    dataset.write_csv(root / "data" / "validation" / "sample.csv", *data["sample"])
    dataset.write_csv(root / "data" / "raw" / "heart.csv", *data["train"])
    (root / "logs").mkdir()
    return {"root": root, "home": home, "older": older, "good": good, "bad": bad}


def _log_predictions(root: Path, rows: np.ndarray, when: datetime) -> None:
    with (root / "logs" / "predictions.log").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({"timestamp": when.isoformat().replace("+00:00", "Z"), "features": dataset.row_to_dict(row),
                                     "prediction": 1, "probability": 0.7, "model_version": "x"}) + "\n")


def check(root: Path, **overrides) -> dict:
    return mc.run_checks({**PARAMS, "home": str(root), **overrides})


def test_good_model_ok_and_drift_stable(installation):
    root = installation["root"]
    versions.install(installation["home"], installation["good"])
    X, _y = dataset.generate(300, seed=77)
    _log_predictions(root, X, datetime.now(timezone.utc))
    result = check(root)
    assert result["version"] == installation["good"] and result["files"]["ok"]
    assert result["model"]["loaded"] and result["performance"]["ok"]
    assert result["previous"]["version"] == installation["older"] and "metrics" in result["previous"]
    assert result["data"]["ok"] and result["data"]["rows"] == 200
    assert result["drift"]["status"] != "significant", result["drift"]
    assert result["predictions"]["count"] == 300 and result["predictions"]["reference_positive_rate"] is not None
    assert result["verdict"] == {"status": "ok", "reasons": []}
    assert result["recommendation"]["action"] == "none"


def test_bad_model_is_rolled_back_to_the_newest_good_version(installation):
    versions.install(installation["home"], installation["bad"])
    result = check(installation["root"], checks=["files", "performance", "previous"])
    assert result["files"]["ok"] and not result["performance"]["ok"]
    assert {b["metric"] for b in result["performance"]["below_floor"]} >= {"accuracy", "roc_auc"}
    assert result["previous"]["regressed"]
    assert result["verdict"]["status"] == "bad_model"
    assert result["recommendation"] == {"action": "rollback", "version": installation["good"],
                                        "reason": result["recommendation"]["reason"]}


def test_truncated_model_file_is_reinstalled(installation):
    home = installation["home"]
    versions.install(home, installation["good"])
    path = home.path(MODEL_FILE)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = check(installation["root"], checks=["files", "performance"])
    assert result["files"]["mismatched"] == [MODEL_FILE]
    assert not result["model"]["loaded"] and result["model"]["error"]
    assert result["verdict"]["status"] == "corrupt_model"
    assert result["recommendation"]["action"] == "reinstall" and result["recommendation"]["version"] == installation["good"]
    versions.install(home, installation["good"])


def test_drifted_inputs(installation, tmp_path):
    versions.install(installation["home"], installation["good"])
    X, y = dataset.generate(300, seed=5, drift=True)
    dataset.write_csv(tmp_path / "recent.csv", X, y)
    result = check(installation["root"], checks=["data", "drift"], recent_data=str(tmp_path / "recent.csv"))
    assert result["drift"]["status"] == "significant"
    assert {"chol", "thalach"} <= set(result["drift"]["significant"])
    assert result["drift"]["features"]["chol"]["recent_mean"] > result["drift"]["features"]["chol"]["reference_mean"] + 50
    assert result["verdict"]["status"] == "drift"


def test_invalid_inputs_fail_the_data_check(installation, tmp_path):
    recent = tmp_path / "recent.csv"
    header = ",".join(dataset.FEATURE_NAMES)
    good = "63,1,0,145,233,1,0,150,0,2.3,0,0,1"
    recent.write_text("\n".join([header] + [good] * 60 + ["63,1,0,145,,1,0,150,0,2.3,0,0,1", "200,1,9,145,233,1,0,150,0,2.3,0,0,1"] * 5) + "\n")
    result = check(installation["root"], checks=["data"], recent_data=str(recent))
    assert result["data"]["invalid_rows"] == 10 and result["data"]["missing"] == {"chol": 5}
    assert result["data"]["out_of_range"] == {"age": 5, "cp": 5}
    assert result["verdict"]["status"] == "bad_data"


def test_tampered_archive_makes_the_files_check_fail(installation, tmp_path):
    versions.install(installation["home"], installation["good"])
    other = tmp_path / "copy"
    other.mkdir()
    archive = versions.archive_path(installation["home"], installation["good"])
    original = archive.read_bytes()
    try:
        archive.write_bytes(original[: len(original) // 2])
        result = check(installation["root"], checks=["files"])
        assert not result["files"]["ok"] and "truncated or corrupt" in result["files"]["error"]
        assert result["verdict"]["status"] == "corrupt_model"
    finally:
        archive.write_bytes(original)


@pytest.mark.parametrize("args, message", [
    ({"since_minutes": 0}, "since_minutes: must be positive"),
    ({"floor": {"precision": 0.5}}, "floor: unknown metric"),
    ({"archive_pattern": "backup.tar.gz"}, "archive_pattern: must be a file name containing {version}"),
    ({"sample": "missing.csv", "checks": ["performance"]}, "sample: "),
    ({"python": "/nonexistent/python", "checks": ["performance"]}, "python: interpreter /nonexistent/python not found"),
])
def test_module_errors_name_the_option(monkeypatch, installation, args, message):
    result, failed = run_module(monkeypatch, model_check_module.main, {"home": str(installation["root"]), **args})
    assert failed and message in result["msg"]


def test_module_missing_home(monkeypatch, tmp_path):
    result, failed = run_module(monkeypatch, model_check_module.main, {"home": str(tmp_path / "nope")})
    assert failed and result["msg"].startswith("home: ")


def test_module_runs_in_check_mode(monkeypatch, installation):
    result, failed = run_module(monkeypatch, model_check_module.main,
                                {"home": str(installation["root"]), "checks": ["files"], "_ansible_check_mode": True})
    assert not failed and result["changed"] is False and result["files"]["ok"]
