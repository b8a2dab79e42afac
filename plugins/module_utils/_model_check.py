# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Heart Disease runbook's model checks: files against the backup manifest, performance, data, drift, predictions.

Everything here is plain Python (no numpy on the managed host). Loading and scoring a model is done by the
ML system's own interpreter (the one its service runs), in a subprocess fed with JSON: a pickle only loads
reliably with the library versions that wrote it, and the module itself may run under the system Python.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ansible_collections.sre.runbooks.plugins.module_utils._release import (
    ReleaseError, list_backups, read_archive, sha256_file,
)

# The 13 UCI features: kind and the range a valid input has (the API's own validation ranges).
FEATURES: dict[str, tuple[str, float, float]] = {
    "age": ("int", 18, 110), "sex": ("cat", 0, 1), "cp": ("cat", 0, 3), "trestbps": ("int", 60, 240),
    "chol": ("int", 80, 700), "fbs": ("cat", 0, 1), "restecg": ("cat", 0, 2), "thalach": ("int", 50, 230),
    "exang": ("cat", 0, 1), "oldpeak": ("float", 0.0, 10.0), "slope": ("cat", 0, 2), "ca": ("cat", 0, 4),
    "thal": ("cat", 0, 3),
}
FEATURE_NAMES = list(FEATURES)
TARGET = "target"
FLOOR = {"accuracy": 0.80, "roc_auc": 0.85, "f1": 0.75}
PSI_BANDS = (0.1, 0.25)
PSI_EPSILON = 1e-4
CHECKS = ("files", "performance", "previous", "data", "drift", "predictions")
_ACCESS = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ - [\w.]+ - \w+ - request .*?\bpath=(?P<path>\S+) "
                     r"status=(?P<status>\d{3}) duration_ms=(?P<ms>[\d.]+)")

# Run by the ML system's interpreter: JSON on stdin {model, preprocessor, rows}, JSON on stdout.
LOADER = r"""
import json, sys
request = json.load(sys.stdin)
try:
    import joblib
    import numpy as np
except Exception as exc:
    sys.stdout.write(json.dumps({"error": "import", "msg": "joblib/numpy not importable by this interpreter: %s" % exc}))
    sys.exit(0)
def score(job):
    try:
        preprocessor = joblib.load(job["preprocessor"]) if job.get("preprocessor") else None
        model = joblib.load(job["model"])
    except Exception as exc:
        return {"error": "load", "msg": "%s: %s" % (type(exc).__name__, exc)}
    if not hasattr(model, "predict_proba") or (preprocessor is not None and not hasattr(preprocessor, "transform")):
        return {"error": "load", "msg": "the files do not hold a fitted model and preprocessor"}
    kind = "%s.%s" % (type(model).__module__, type(model).__name__)
    try:
        X = np.array(request["rows"], dtype=float).reshape(len(request["rows"]), -1)
        probabilities = model.predict_proba(preprocessor.transform(X) if preprocessor is not None else X)[:, 1]
    except Exception as exc:
        return {"error": "inference", "msg": "%s: %s" % (type(exc).__name__, exc), "model_type": kind}
    if not np.all(np.isfinite(probabilities)):
        return {"error": "inference", "msg": "non-finite probabilities", "model_type": kind}
    return {"probabilities": [float(p) for p in probabilities], "model_type": kind}
sys.stdout.write(json.dumps({"results": [score(job) for job in request["jobs"]]}))
"""


class ModelCheckError(Exception):
    """An input of the check is unusable (missing file, bad CSV, unreachable interpreter); names the option."""


# -- metrics ------------------------------------------------------------------------------------------------

def roc_auc(labels: list[int], scores: list[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied scores averaged); None with a single class."""
    positives = sum(1 for y in labels if y == 1)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(rank for rank, y in zip(ranks, labels) if y == 1)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def classification_metrics(labels: list[int], probabilities: list[float], threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, ROC AUC, F1, precision, recall (rounded to 4 places) of probabilities against 0/1 labels."""
    if len(labels) != len(probabilities) or not labels:
        raise ModelCheckError(f"sample: {len(labels)} labels for {len(probabilities)} predictions")
    predicted = [1 if p >= threshold else 0 for p in probabilities]
    tp = sum(1 for y, p in zip(labels, predicted) if y == 1 and p == 1)
    fp = sum(1 for y, p in zip(labels, predicted) if y == 0 and p == 1)
    fn = sum(1 for y, p in zip(labels, predicted) if y == 1 and p == 0)
    correct = sum(1 for y, p in zip(labels, predicted) if y == p)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    auc = roc_auc(labels, probabilities)
    return {"accuracy": round(correct / len(labels), 4), "roc_auc": None if auc is None else round(auc, 4),
            "f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4), "n_samples": len(labels),
            "positive_rate": round(sum(predicted) / len(predicted), 4)}


def below_floor(metrics: dict[str, Any], floor: dict[str, float]) -> list[dict[str, Any]]:
    """The floor's metrics the model misses (a metric that could not be computed misses too)."""
    return [{"metric": name, "value": metrics.get(name), "floor": minimum} for name, minimum in floor.items()
            if metrics.get(name) is None or metrics[name] < minimum]


# -- tables -------------------------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "NA", "NaN", "nan", "?", "null")):
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan  # present but not a number: a type error, not a missing value
    return number


def _valid_number(value: Any) -> bool:
    number = _number(value)
    return number is not None and not math.isnan(number)


def read_table(path: str, labelled: bool, option: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows of a CSV with the 13 feature columns (and ``target`` when labelled), values as read."""
    file = Path(path)
    if not file.is_file():
        raise ModelCheckError(f"{option}: {path} does not exist or is not a file")
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [name for name in FEATURE_NAMES + ([TARGET] if labelled else []) if name not in columns]
        if missing:
            raise ModelCheckError(f"{option}: {path} lacks the column(s) {', '.join(missing)}")
        rows = list(reader)
    if not rows:
        raise ModelCheckError(f"{option}: {path} has no rows")
    labels = []
    if labelled:
        for number, row in enumerate(rows, start=2):
            if str(row[TARGET]).strip() not in ("0", "1"):
                raise ModelCheckError(f"{option}: {path} line {number}: target must be 0 or 1, got {row[TARGET]!r}")
            labels.append(int(row[TARGET]))
    return [{name: row[name] for name in FEATURE_NAMES} for row in rows], labels


def numeric_rows(rows: list[dict[str, Any]], option: str) -> list[list[float]]:
    """Feature rows as numbers in FEATURE_NAMES order; a missing or non-numeric value is an error naming the row."""
    matrix = []
    for index, row in enumerate(rows):
        values = [_number(row.get(name)) for name in FEATURE_NAMES]
        bad = [name for name, value in zip(FEATURE_NAMES, values) if value is None or math.isnan(value)]
        if bad:
            raise ModelCheckError(f"{option}: row {index + 1} has missing or non-numeric {', '.join(bad)}")
        matrix.append(values)
    return matrix


def data_quality(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Missing values, wrong types and out-of-range values per feature, and the rows with any of them."""
    missing = {name: 0 for name in FEATURE_NAMES}
    wrong_type = {name: 0 for name in FEATURE_NAMES}
    out_of_range = {name: 0 for name in FEATURE_NAMES}
    invalid_rows = 0
    examples: list[str] = []
    for index, row in enumerate(rows):
        problems = []
        for name, (kind, low, high) in FEATURES.items():
            value = _number(row.get(name))
            if value is None:
                missing[name] += 1
                problems.append(f"{name} missing")
            elif math.isnan(value) or math.isinf(value) or (kind in ("int", "cat") and value != int(value)):
                wrong_type[name] += 1
                problems.append(f"{name}={row.get(name)!r} is not {'an integer' if kind != 'float' else 'a number'}")
            elif not low <= value <= high:
                out_of_range[name] += 1
                problems.append(f"{name}={row.get(name)} outside {low}-{high}")
        if problems:
            invalid_rows += 1
            if len(examples) < 5:
                examples.append(f"row {index + 1}: " + "; ".join(problems))
    total = len(rows)
    return {"rows": total, "invalid_rows": invalid_rows,
            "invalid_ratio": round(invalid_rows / total, 4) if total else 0.0,
            "missing": {k: v for k, v in missing.items() if v}, "wrong_type": {k: v for k, v in wrong_type.items() if v},
            "out_of_range": {k: v for k, v in out_of_range.items() if v}, "examples": examples}


# -- drift --------------------------------------------------------------------------------------------------

def _quantile_edges(values: list[float], bins: int) -> list[float]:
    ordered = sorted(values)
    edges = []
    for k in range(1, bins):
        edge = ordered[min(len(ordered) - 1, int(len(ordered) * k / bins))]
        if not edges or edge > edges[-1]:
            edges.append(edge)
    return edges


def _bin_index(value: float, edges: list[float]) -> int:
    for index, edge in enumerate(edges):
        if value < edge:
            return index
    return len(edges)


def psi(reference: list[float], recent: list[float], kind: str, bins: int = 10) -> float:
    """Population stability index of RECENT against REFERENCE: sum((r - e) * ln(r / e)) over the bins.

    Categorical features bin by code; numeric ones by the reference's deciles. Empty bins count as 1e-4.
    """
    if not reference or not recent:
        raise ModelCheckError("drift: population stability needs reference and recent values")
    if kind == "cat":
        codes = sorted(set(reference) | set(recent))
        ref_counts = [sum(1 for v in reference if v == c) for c in codes]
        new_counts = [sum(1 for v in recent if v == c) for c in codes]
    else:
        edges = _quantile_edges(reference, bins)
        ref_counts = [0] * (len(edges) + 1)
        new_counts = [0] * (len(edges) + 1)
        for v in reference:
            ref_counts[_bin_index(v, edges)] += 1
        for v in recent:
            new_counts[_bin_index(v, edges)] += 1
    total = 0.0
    for ref_count, new_count in zip(ref_counts, new_counts):
        expected = max(ref_count / len(reference), PSI_EPSILON)
        actual = max(new_count / len(recent), PSI_EPSILON)
        total += (actual - expected) * math.log(actual / expected)
    return total


def psi_band(value: float, bands: tuple[float, float] = PSI_BANDS) -> str:
    return "stable" if value < bands[0] else "moderate" if value < bands[1] else "significant"


def drift_report(reference_rows: list[list[float]], recent_rows: list[list[float]], bands: tuple[float, float] = PSI_BANDS,
                 bins: int = 10) -> dict[str, Any]:
    """PSI per feature with its band, the means on both sides, and the features past each band."""
    features = {}
    for index, name in enumerate(FEATURE_NAMES):
        ref = [row[index] for row in reference_rows]
        new = [row[index] for row in recent_rows]
        value = psi(ref, new, FEATURES[name][0], bins)
        features[name] = {"psi": round(value, 4), "band": psi_band(value, bands),
                          "reference_mean": round(sum(ref) / len(ref), 3), "recent_mean": round(sum(new) / len(new), 3)}
    significant = sorted((n for n, f in features.items() if f["band"] == "significant"), key=lambda n: -features[n]["psi"])
    moderate = sorted((n for n, f in features.items() if f["band"] == "moderate"), key=lambda n: -features[n]["psi"])
    worst = max(f["psi"] for f in features.values())
    return {"reference_rows": len(reference_rows), "recent_rows": len(recent_rows), "bands": list(bands),
            "features": features, "significant": significant, "moderate": moderate, "max_psi": round(worst, 4),
            "status": "significant" if significant else "moderate" if moderate else "stable"}


# -- prediction and access logs -----------------------------------------------------------------------------

def _parse_time(text: Any) -> float | None:
    """An ISO 8601 time (a naive one is UTC, as the API writes it) → epoch seconds; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment).timestamp()
    except (ValueError, OverflowError):
        return None


def _tail_lines(path: Path, max_bytes: int) -> list[str]:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - max_bytes))
        data = handle.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if size > max_bytes else lines


def read_predictions(path: str, since_seconds: float, now: float | None = None, max_bytes: int = 32 << 20) -> dict[str, Any]:
    """Prediction log entries (JSON lines) of the last SINCE_SECONDS, oldest first, and how many lines were unreadable."""
    file = Path(path)
    if not file.is_file():
        raise ModelCheckError(f"predictions_log: {path} does not exist or is not a file")
    cutoff = (now if now is not None else time.time()) - since_seconds
    entries, unreadable = [], 0
    for line in _tail_lines(file, max_bytes):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: a corrupt line of thousands of brackets
            unreadable += 1
            continue
        stamp = _parse_time(entry.get("timestamp")) if isinstance(entry, dict) else None
        if stamp is None:
            unreadable += 1
            continue
        if stamp >= cutoff:
            entries.append(entry)
    return {"entries": entries, "unreadable": unreadable}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def access_summary(path: str | None, since_seconds: float, now: float | None = None, prefix: str = "/predict") -> dict[str, Any]:
    """Requests to PREFIX in the API log of the last SINCE_SECONDS: count, 5xx, 4xx and latency percentiles."""
    if not path or not Path(path).is_file():
        return {"available": False}
    cutoff = (now if now is not None else time.time()) - since_seconds
    durations, server_errors, client_errors = [], 0, 0
    for line in _tail_lines(Path(path), 32 << 20):
        match = _ACCESS.match(line)
        if not match or not match["path"].startswith(prefix):
            continue
        try:
            stamp = datetime.strptime(match["ts"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:  # digits that are no date (month 13, a torn line): not a request of the window
            continue
        if stamp < cutoff:
            continue
        status = int(match["status"])
        server_errors += status >= 500
        client_errors += 400 <= status < 500
        durations.append(float(match["ms"]))
    total = len(durations)
    return {"available": True, "requests": total, "server_errors": server_errors, "client_errors": client_errors,
            "error_rate": round(server_errors / total, 4) if total else 0.0,
            "latency_ms": {"p50": _percentile(durations, 0.5), "p95": _percentile(durations, 0.95),
                           "p99": _percentile(durations, 0.99), "max": max(durations) if durations else None}}


def prediction_summary(entries: list[dict[str, Any]], reference_positive_rate: float | None, shift_threshold: float,
                       access: dict[str, Any]) -> dict[str, Any]:
    """Volume, versions, class balance (and its shift from the reference prevalence), error rate."""
    count = len(entries)
    positives = sum(1 for e in entries if e.get("prediction") == 1)
    probabilities = [float(e["probability"]) for e in entries if isinstance(e.get("probability"), (int, float))]
    by_version: dict[str, int] = {}
    for entry in entries:
        by_version[str(entry.get("model_version"))] = by_version.get(str(entry.get("model_version")), 0) + 1
    rate = round(positives / count, 4) if count else None
    shift = round(rate - reference_positive_rate, 4) if rate is not None and reference_positive_rate is not None else None
    return {"count": count, "by_model_version": by_version, "positive_rate": rate,
            "reference_positive_rate": reference_positive_rate, "class_balance_shift": shift,
            "class_balance_shifted": shift is not None and abs(shift) > shift_threshold,
            "mean_probability": round(sum(probabilities) / len(probabilities), 4) if probabilities else None,
            "requests": access.get("requests"), "server_errors": access.get("server_errors"),
            "error_rate": access.get("error_rate"), "latency_ms": access.get("latency_ms")}


# -- files against the manifest -----------------------------------------------------------------------------

def read_live_version(home: Path, version_file: str) -> str | None:
    try:
        return (home / version_file).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def check_files(home: Path, archive: str | None, version: str | None) -> dict[str, Any]:
    """The live files against the live version's backup manifest (the archive itself verified too)."""
    result: dict[str, Any] = {"version": version, "archive": archive, "ok": False, "files": {}, "mismatched": [], "missing": []}
    if not version:
        result["error"] = "no live version recorded (version_file missing or empty)"
        return result
    if not archive:
        result["error"] = f"no backup archive for the live version {version}"
        return result
    try:
        manifest = read_archive(archive)
    except ReleaseError as exc:
        result["error"] = str(exc)
        return result
    result["manifest_metrics"] = manifest.get("metrics") or {}
    result["manifest_version"] = manifest.get("version")
    for name, expected in sorted(manifest["files"].items()):
        path = home / name
        actual = sha256_file(path) if path.is_file() else None
        result["files"][name] = {"expected": expected, "actual": actual, "ok": actual == expected}
        if actual is None:
            result["missing"].append(name)
        elif actual != expected:
            result["mismatched"].append(name)
    result["ok"] = not result["mismatched"] and not result["missing"] and str(manifest.get("version")) == version
    if str(manifest.get("version")) != version:
        result["error"] = f"{archive}'s manifest names version {manifest.get('version')}, the live version is {version}"
    return result


# -- scoring ------------------------------------------------------------------------------------------------

def unit_interpreter(service: str, run=subprocess.run) -> str | None:
    """The interpreter a systemd unit runs (ExecStart's program when it is a python), or None."""
    if not shutil.which("systemctl"):
        return None
    try:
        proc = run(["systemctl", "show", "-p", "ExecStart", "--value", service], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"path=(\S+)", proc.stdout or "")
    program = match.group(1) if match else (shlex.split(proc.stdout)[0] if (proc.stdout or "").strip() else None)
    return program if program and "python" in Path(program).name else None


def score_files(python: str, jobs: list[tuple[Path, Path | None]], rows: list[list[float]], cwd: Path,
                timeout: float = 120) -> list[dict[str, Any]]:
    """For each (model, preprocessor) pair, the probabilities of ROWS computed by PYTHON, or {'error', 'msg'}.

    One interpreter scores every pair: importing the ML libraries is most of the time.
    """
    payload = json.dumps({"jobs": [{"model": str(m), "preprocessor": str(pre) if pre else None} for m, pre in jobs], "rows": rows})
    try:
        proc = subprocess.run([python, "-c", LOADER], input=payload, capture_output=True, text=True, timeout=timeout,
                              cwd=str(cwd), check=False)
    except (FileNotFoundError, PermissionError):
        raise ModelCheckError(f"python: interpreter {python} not found or not executable") from None
    except subprocess.TimeoutExpired:
        return [{"error": "timeout", "msg": f"loading and scoring took longer than {timeout:.0f} s"}] * len(jobs)
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        # The interpreter died while unpickling (segfault, abort): a load failure of the files.
        failure = {"error": "load", "msg": f"{python} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}"}
        return [failure] * len(jobs)
    if answer.get("error") == "import":
        raise ModelCheckError(f"python: {answer['msg']}")
    return answer["results"]


def score_api(url: str, api_key: str, rows: list[dict[str, Any]], timeout: float, validate_certs: bool,
              batch_size: int = 500) -> dict[str, Any]:
    """Probabilities from the API's /predict/batch (what the service really serves) and the version it reports."""
    from ansible_collections.sre.runbooks.plugins.module_utils._http import (  # pylint: disable=import-outside-toplevel
        JsonHttpClient, ServiceUnreachable, validate_base_url,
    )
    try:
        client = JsonHttpClient(validate_base_url(url, "api_url"), timeout=timeout, validate_certs=validate_certs,
                                headers={"X-API-Key": api_key}, option_name="api_url")
    except ValueError as exc:
        raise ModelCheckError(str(exc)) from None
    probabilities: list[float] = []
    version = None
    for start in range(0, len(rows), batch_size):
        try:
            status, body = client.request("POST", "/predict/batch", data={"instances": rows[start:start + batch_size]})
        except ServiceUnreachable as exc:
            return {"error": "unreachable", "msg": str(exc)}
        if status != 200 or not isinstance(body, dict):
            detail = body.get("detail") if isinstance(body, dict) else str(body)[:200]
            return {"error": "http", "status": status, "msg": f"/predict/batch answered {status}: {detail}"}
        probabilities.extend(float(p["probability"]) for p in body.get("predictions", []))
        version = body.get("model_version")
    return {"probabilities": probabilities, "model_version": version}


def _api_rows(rows: list[list[float]]) -> list[dict[str, Any]]:
    return [{name: (round(value, 1) if FEATURES[name][0] == "float" else int(value)) for name, value in zip(FEATURE_NAMES, row)}
            for row in rows]


# -- versions -----------------------------------------------------------------------------------------------

def manifest_clears(metrics: dict[str, Any] | None, floor: dict[str, float]) -> bool:
    return bool(metrics) and not below_floor(metrics, floor)


def recommend(live: str | None, files_ok: bool, load_ok: bool, performance_ok: bool | None, backups: list[dict[str, Any]],
              floor: dict[str, float]) -> dict[str, Any]:
    """What a model recovery should do: nothing, reinstall the live version from its backup, or roll back."""
    by_version = {b["version"]: b for b in backups}
    live_backup = by_version.get(live or "")
    live_manifest_good = bool(live_backup) and "error" not in live_backup and manifest_clears(live_backup.get("metrics"), floor)
    if files_ok and load_ok and performance_ok is not False:
        return {"action": "none", "version": live, "reason": f"the live version {live} matches its manifest and clears the floor"}
    if not files_ok and live_manifest_good:
        return {"action": "reinstall", "version": live,
                "reason": f"the live files of {live} differ from its manifest; its verified backup clears the floor"}
    candidates = [b for b in backups if b["version"] != live and "error" not in b and manifest_clears(b.get("metrics"), floor)]
    older = [b for b in candidates if live is None or b["version"] < live]
    pick = (older or candidates)[-1] if candidates else None
    if pick is None:
        return {"action": "escalate", "version": None, "reason": "no other backed-up version clears the quality floor"}
    return {"action": "rollback", "version": pick["version"],
            "reason": f"the live version {live} is below the quality floor; {pick['version']} is the newest other version that clears it"}


def _resolve(home: Path, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else home / path


def _extract_version(archive: str, destination: Path) -> dict[str, Any]:
    """Verify an archive against its manifest and unpack its files into DESTINATION; the manifest."""
    manifest = read_archive(archive)
    with tarfile.open(archive, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.removeprefix("./") in manifest["files"]]
        try:
            tar.extractall(destination, members=members, filter="data")
        except TypeError:  # Python before 3.11.4 (Debian bookworm: 3.11.2) has no filter; the members are
            # already checked to be plain files at safe relative paths (read_archive)
            tar.extractall(destination, members=members)  # nosec B202
    return manifest


# -- the whole check ----------------------------------------------------------------------------------------

def run_checks(p: dict[str, Any], now: float | None = None, interpreter=unit_interpreter) -> dict[str, Any]:  # noqa: C901
    """Every check P asks for; the verdict (ok, corrupt_model, bad_model, regressed, drift, bad_data) and a recommendation."""
    # pylint: disable=too-many-locals,too-many-branches,too-many-statements
    home = Path(p["home"])
    if not home.is_dir():
        raise ModelCheckError(f"home: {p['home']} does not exist or is not a directory")
    checks = list(p["checks"])
    floor = {**FLOOR, **(p.get("floor") or {})}
    unknown = sorted(set(floor) - set(FLOOR))
    if unknown:
        raise ModelCheckError(f"floor: unknown metric(s) {', '.join(unknown)}; known: {', '.join(FLOOR)}")
    for metric, value in floor.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
            raise ModelCheckError(f"floor: {metric} must be a number above 0 and at most 1, got {value!r}")
    bands = tuple(p.get("psi_bands") or PSI_BANDS)
    if len(bands) != 2 or not 0 < bands[0] < bands[1]:
        raise ModelCheckError(f"psi_bands: expected two increasing positive numbers, got {list(bands)}")
    backup_dir = _resolve(home, p["backup_dir"])
    live = read_live_version(home, p["version_file"])
    backups = list_backups(str(backup_dir), p["archive_pattern"]) if backup_dir and backup_dir.is_dir() else []
    by_version = {b["version"]: b for b in backups}
    result: dict[str, Any] = {"changed": False, "version": live, "home": str(home), "checks": checks,
                              "floor": floor, "backups": backups}
    reasons: list[str] = []

    files_ok = True
    if "files" in checks:
        files = check_files(home, by_version.get(live or "", {}).get("archive"), live)
        result["files"] = files
        files_ok = files["ok"]
        if not files_ok:
            reasons.append("files: " + (files.get("error") or
                                        f"sha256 differs from the manifest for {', '.join(files['mismatched'] + files['missing'])}"))

    python = None
    needs_python = any(c in checks for c in ("performance", "previous"))
    if needs_python:
        python = p.get("python") or "auto"
        if python == "auto":
            python = interpreter(p["service"]) or p["module_python"]
        result["python"] = python

    sample_rows: list[list[float]] = []
    labels: list[int] = []
    if needs_python:
        raw, labels = read_table(str(_resolve(home, p["sample"])), labelled=True, option="sample")
        sample_rows = numeric_rows(raw, "sample")

    load_ok = True
    performance_ok: bool | None = None
    live_metrics = None
    threshold = p["decision_threshold"]
    staging = Path(tempfile.mkdtemp(prefix="model_check_")) if needs_python else None
    try:
        jobs: list[tuple[Path, Path | None]] = []
        if "performance" in checks:
            jobs.append((_resolve(home, p["model_file"]), _resolve(home, p["preprocessor_file"])))
        previous: dict[str, Any] = {}
        if "previous" in checks:
            older = [b for b in backups if live and b["version"] < live]
            previous["version"] = older[-1]["version"] if older else None
            if older:
                previous["manifest_metrics"] = older[-1].get("metrics")
                try:
                    names = _extract_version(older[-1]["archive"], staging)["files"]
                except ReleaseError as exc:
                    previous["error"] = str(exc)
                else:
                    model_rel, pre_rel = str(p["model_file"]), str(p["preprocessor_file"] or "")
                    if model_rel not in names:
                        previous["error"] = f"{older[-1]['archive']} has no {model_rel}"
                    else:
                        jobs.append((staging / model_rel, staging / pre_rel if pre_rel in names else None))
        scores = score_files(python, jobs, sample_rows, home, p["timeout"]) if jobs else []
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)

    if "performance" in checks:
        scored = scores.pop(0)
        model = {"loaded": "error" not in scored or scored["error"] == "inference", "model_type": scored.get("model_type")}
        performance: dict[str, Any] = {"sample": str(_resolve(home, p["sample"])), "source": "files"}
        if "error" in scored:
            load_ok = False
            model["error"] = scored["msg"]
            reasons.append(f"model: cannot {'score with' if scored['error'] == 'inference' else 'load'} the live files: {scored['msg']}")
        else:
            live_metrics = classification_metrics(labels, scored["probabilities"], threshold)
            performance["metrics"] = live_metrics
            performance["below_floor"] = below_floor(live_metrics, floor)
            performance_ok = not performance["below_floor"]
            if not performance_ok:
                reasons.append("performance: " + ", ".join(f"{b['metric']} {b['value']} < {b['floor']}" for b in performance["below_floor"]))
        performance["ok"] = bool(performance_ok)
        result["model"] = model
        result["performance"] = performance
        if p.get("api_url") and p.get("api_key"):
            served = score_api(p["api_url"], p["api_key"], _api_rows(sample_rows), p["timeout"], p["validate_certs"])
            if "error" in served:
                result["served"] = {"ok": False, "error": served["msg"]}
                reasons.append(f"served: {served['msg']}")
            else:
                served_metrics = classification_metrics(labels, served["probabilities"], threshold)
                result["served"] = {"model_version": served["model_version"], "metrics": served_metrics,
                                    "below_floor": below_floor(served_metrics, floor),
                                    "matches_live_version": served["model_version"] == live}
                result["served"]["ok"] = not result["served"]["below_floor"] and result["served"]["matches_live_version"]
                if not result["served"]["ok"]:
                    reasons.append(f"served: the API serves {served['model_version']} "
                                   + ("below the floor" if result["served"]["below_floor"] else f"but the live files are {live}"))

    regressed: list[dict[str, Any]] = []
    if "previous" in checks:
        if scores:
            scored = scores.pop(0)
            if "error" in scored:
                previous["error"] = scored["msg"]
            else:
                previous["metrics"] = classification_metrics(labels, scored["probabilities"], threshold)
        if live_metrics and previous.get("metrics"):
            previous["delta"] = {name: round(live_metrics[name] - previous["metrics"][name], 4)
                                 for name in FLOOR if live_metrics.get(name) is not None and previous["metrics"].get(name) is not None}
            regressed = [{"metric": name, "delta": delta} for name, delta in previous["delta"].items() if delta < -p["max_regression"]]
            previous["regressed"] = regressed
            if regressed:
                reasons.append("previous: worse than " + previous["version"] + " by "
                               + ", ".join(f"{r['metric']} {r['delta']}" for r in regressed))
        result["previous"] = previous

    since = p["since_minutes"] * 60
    recent_raw: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    if any(c in checks for c in ("data", "drift", "predictions")):
        if p.get("recent_data"):
            recent_raw, _labels = read_table(str(_resolve(home, p["recent_data"])), labelled=False, option="recent_data")
        else:
            read = read_predictions(str(_resolve(home, p["predictions_log"])), since, now)
            entries = read["entries"]
            recent_raw = [e.get("features") or {} for e in entries][-p["data_window"]:]
            result["predictions_unreadable_lines"] = read["unreadable"]

    data_ok = True
    if "data" in checks:
        quality = data_quality(recent_raw)
        quality["source"] = "recent_data" if p.get("recent_data") else "predictions_log"
        quality["ok"] = quality["invalid_ratio"] <= p["max_invalid_ratio"]
        data_ok = quality["ok"]
        if not data_ok:
            reasons.append(f"data: {quality['invalid_rows']} of {quality['rows']} recent inputs invalid")
        result["data"] = quality

    reference_raw: list[dict[str, Any]] = []
    reference_labels: list[int] = []
    if "drift" in checks or "predictions" in checks:
        reference_path = _resolve(home, p["reference"])
        reference_raw, _none = read_table(str(reference_path), labelled=False, option="reference")
        try:
            _raw, reference_labels = read_table(str(reference_path), labelled=True, option="reference")
        except ModelCheckError:
            reference_labels = []

    drifted = False
    if "drift" in checks:
        valid_recent = [r for r in recent_raw if all(_valid_number(r.get(n)) for n in FEATURE_NAMES)]
        if len(valid_recent) < p["min_drift_rows"]:
            result["drift"] = {"status": "insufficient_data", "recent_rows": len(valid_recent), "min_rows": p["min_drift_rows"],
                               "significant": [], "moderate": []}
        else:
            report = drift_report(numeric_rows(reference_raw, "reference"), numeric_rows(valid_recent, "recent"), bands)
            result["drift"] = report
            drifted = report["status"] == "significant"
            if drifted:
                reasons.append("drift: " + ", ".join(f"{n} PSI {report['features'][n]['psi']}" for n in report["significant"]))

    if "predictions" in checks:
        prevalence = round(sum(reference_labels) / len(reference_labels), 4) if reference_labels else None
        if not entries and p.get("recent_data"):
            entries = read_predictions(str(_resolve(home, p["predictions_log"])), since, now)["entries"]
        access = access_summary(str(_resolve(home, p["api_log"])) if p.get("api_log") else None, since, now)
        result["predictions"] = prediction_summary(entries, prevalence, p["class_shift_threshold"], access)
        result["predictions"]["since_minutes"] = p["since_minutes"]

    if not files_ok or not load_ok:
        status = "corrupt_model"
    elif performance_ok is False or (result.get("served") and result["served"].get("below_floor")):
        status = "bad_model"
    elif regressed:
        status = "regressed"
    elif drifted:
        status = "drift"
    elif not data_ok:
        status = "bad_data"
    else:
        status = "ok"
    result["verdict"] = {"status": status, "reasons": reasons}
    result["recommendation"] = recommend(live, files_ok, load_ok, performance_ok, backups, floor)
    return result
