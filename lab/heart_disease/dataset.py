"""A synthetic but realistic heart-disease dataset with the 13 UCI features.

Each patient's class is drawn first (prevalence about 46 %, as in the Cleveland
data), then the features from class-conditional distributions whose ranges,
types and effect directions follow the UCI data: older, male, asymptomatic
chest pain, exercise angina, ST depression, flat slope, more coloured vessels,
reversible thallium defect and a lower maximum heart rate all mean disease.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

# name -> (kind, low, high) ; kind is "int", "float" or "cat" (categorical codes low..high)
FEATURES = {
    "age": ("int", 29, 77),
    "sex": ("cat", 0, 1),
    "cp": ("cat", 0, 3),
    "trestbps": ("int", 94, 200),
    "chol": ("int", 126, 564),
    "fbs": ("cat", 0, 1),
    "restecg": ("cat", 0, 2),
    "thalach": ("int", 71, 202),
    "exang": ("cat", 0, 1),
    "oldpeak": ("float", 0.0, 6.2),
    "slope": ("cat", 0, 2),
    "ca": ("cat", 0, 4),
    "thal": ("cat", 0, 3),
}
FEATURE_NAMES = list(FEATURES)
# Categorical with more than two codes: one-hot encoded; binary ones stay as 0/1 numbers.
CATEGORICAL = [name for name, (kind, _low, high) in FEATURES.items() if kind == "cat" and high > 1]
NUMERIC = [name for name in FEATURE_NAMES if name not in CATEGORICAL]
TARGET = "target"

# Shifts applied by the "drifted inputs" fault: cholesterol up, maximum heart rate down.
DRIFT_SHIFT = {"chol": 70.0, "thalach": -35.0}


def _categorical(rng: np.random.Generator, y: np.ndarray, probs_healthy: list[float], probs_sick: list[float]) -> np.ndarray:
    healthy = rng.choice(len(probs_healthy), size=y.size, p=probs_healthy)
    sick = rng.choice(len(probs_sick), size=y.size, p=probs_sick)
    return np.where(y == 1, sick, healthy)


def generate(n_rows: int, seed: int, drift: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(X, y)``: X is float64 with columns in FEATURE_NAMES order, y is 0/1."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n_rows) < 0.46).astype(int)
    age = rng.normal(51.5 + 5.0 * y, 8.5)
    sex = (rng.random(n_rows) < 0.56 + 0.28 * y).astype(int)
    cp = _categorical(rng, y, [0.25, 0.25, 0.38, 0.12], [0.60, 0.13, 0.18, 0.09])
    trestbps = rng.normal(128.0 + 0.35 * (age - 54) + 5.0 * y, 16.0)
    chol = rng.normal(236.0 + 0.8 * (age - 54) + 12.0 * y, 47.0)
    fbs = (rng.random(n_rows) < 0.13 + 0.04 * y).astype(int)
    restecg = _categorical(rng, y, [0.42, 0.57, 0.01], [0.56, 0.41, 0.03])
    thalach = rng.normal(160.0 - 0.7 * (age - 54) - 15.0 * y, 19.0)
    exang = (rng.random(n_rows) < 0.16 + 0.34 * y).astype(int)
    oldpeak = rng.gamma(shape=1.1 + 0.6 * y, scale=0.5 + 0.45 * y) * (rng.random(n_rows) > 0.3 - 0.15 * y)
    slope = _categorical(rng, y, [0.05, 0.30, 0.65], [0.10, 0.65, 0.25])
    ca = _categorical(rng, y, [0.74, 0.15, 0.06, 0.04, 0.01], [0.40, 0.27, 0.18, 0.12, 0.03])
    thal = _categorical(rng, y, [0.01, 0.05, 0.74, 0.20], [0.01, 0.09, 0.34, 0.56])
    if drift:
        chol = chol + DRIFT_SHIFT["chol"]
        thalach = thalach + DRIFT_SHIFT["thalach"]
    columns = {
        "age": np.rint(age), "sex": sex, "cp": cp, "trestbps": np.rint(trestbps), "chol": np.rint(chol),
        "fbs": fbs, "restecg": restecg, "thalach": np.rint(thalach), "exang": exang,
        "oldpeak": np.round(oldpeak, 1), "slope": slope, "ca": ca, "thal": thal,
    }
    X = np.column_stack([columns[name] for name in FEATURE_NAMES]).astype(float)
    for index, name in enumerate(FEATURE_NAMES):
        low, high = FEATURES[name][1:]
        if drift and name in DRIFT_SHIFT:
            low, high = VALID_RANGES[name]
        X[:, index] = np.clip(X[:, index], low, high)
    return X, y


# What the API accepts: wider than the training ranges, as a real service's validation would be.
VALID_RANGES = {
    "age": (18, 110), "sex": (0, 1), "cp": (0, 3), "trestbps": (60, 240), "chol": (80, 700),
    "fbs": (0, 1), "restecg": (0, 2), "thalach": (50, 230), "exang": (0, 1), "oldpeak": (0.0, 10.0),
    "slope": (0, 2), "ca": (0, 4), "thal": (0, 3),
}


def row_to_dict(row: np.ndarray) -> dict:
    """One feature row as the API's JSON body (ints where the feature is an integer)."""
    return {
        name: (round(float(value), 1) if FEATURES[name][0] == "float" else int(value))
        for name, value in zip(FEATURE_NAMES, row)
    }


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FEATURE_NAMES + [TARGET])
        for row, label in zip(X, y):
            writer.writerow(list(row_to_dict(row).values()) + [int(label)])


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a labelled CSV with the 13 feature columns and ``target`` (any column order)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in FEATURE_NAMES + [TARGET] if name not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(missing)}")
        rows = list(reader)
    X = np.array([[float(row[name]) for name in FEATURE_NAMES] for row in rows], dtype=float)
    y = np.array([int(row[TARGET]) for row in rows], dtype=int)
    return X, y
