"""Training, evaluation, loading and scoring of the preprocessor + MLP pair."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .common import EVALUATION_FILE, MODEL_FILE, PREPROCESSOR_FILE, QUALITY_FLOOR, Home, sha256_file
from .dataset import CATEGORICAL, FEATURE_NAMES, NUMERIC


def make_preprocessor() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("numeric", StandardScaler(), [FEATURE_NAMES.index(name) for name in NUMERIC]),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), [FEATURE_NAMES.index(name) for name in CATEGORICAL]),
        ]
    )


def train(X: np.ndarray, y: np.ndarray, seed: int, preprocessor: ColumnTransformer | None = None,
          alpha: float = 1e-2, early_stopping: bool = True, max_iter: int = 400) -> tuple[ColumnTransformer, MLPClassifier]:
    """Fit (or reuse) the preprocessor and fit an MLP on the transformed data."""
    if preprocessor is None:
        preprocessor = make_preprocessor().fit(X)
    model = MLPClassifier(hidden_layer_sizes=(32, 16), alpha=alpha, max_iter=max_iter,
                          early_stopping=early_stopping, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(preprocessor.transform(X), y)
    return preprocessor, model


def evaluate(preprocessor, model, X: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict:
    probability = model.predict_proba(preprocessor.transform(X))[:, 1]
    predicted = (probability >= threshold).astype(int)
    return {
        "accuracy": round(float(accuracy_score(y, predicted)), 4),
        "roc_auc": round(float(roc_auc_score(y, probability)), 4),
        "f1": round(float(f1_score(y, predicted, zero_division=0)), 4),
        "precision": round(float(precision_score(y, predicted, zero_division=0)), 4),
        "recall": round(float(recall_score(y, predicted, zero_division=0)), 4),
        "confusion_matrix": confusion_matrix(y, predicted, labels=[0, 1]).tolist(),
        "n_samples": int(y.size),
    }


def below_floor(metrics: dict, floor: dict | None = None) -> dict:
    """The metrics under the quality floor, as ``{name: (value, floor)}``; empty when the model is good."""
    floor = floor or QUALITY_FLOOR
    return {name: (metrics[name], minimum) for name, minimum in floor.items() if metrics[name] < minimum}


def save(home: Home, preprocessor, model, evaluation: dict) -> None:
    """Write the three live files (not atomically as a set: versions.install is the atomic path)."""
    for relative, obj in ((PREPROCESSOR_FILE, preprocessor), (MODEL_FILE, model), (EVALUATION_FILE, evaluation)):
        path = home.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(obj, path)


@dataclass
class LoadedModel:
    """What a service has in memory: the pair, its evaluation record and the hashes of the files it read."""

    preprocessor: object
    model: object
    evaluation: dict
    version: str
    file_hashes: dict = field(default_factory=dict)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(self.preprocessor.transform(X))[:, 1]


class ModelLoadError(RuntimeError):
    """A model file is missing or cannot be unpickled into the expected objects."""


def load(home: Home) -> LoadedModel:
    hashes = {}
    objects = {}
    for relative in (PREPROCESSOR_FILE, MODEL_FILE, EVALUATION_FILE):
        path = home.path(relative)
        try:
            hashes[relative] = sha256_file(path)
            objects[relative] = joblib.load(path)
        except FileNotFoundError as exc:
            raise ModelLoadError(f"model file {path} is missing") from exc
        except Exception as exc:  # a corrupted pickle can raise almost anything
            raise ModelLoadError(f"model file {path} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    model = objects[MODEL_FILE]
    if not hasattr(model, "predict_proba") or not hasattr(objects[PREPROCESSOR_FILE], "transform"):
        raise ModelLoadError(f"{home.path(MODEL_FILE)} or {home.path(PREPROCESSOR_FILE)} does not hold a fitted model")
    try:
        version = home.version_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        version = "unknown"
    evaluation = objects[EVALUATION_FILE] if isinstance(objects[EVALUATION_FILE], dict) else {}
    loaded = LoadedModel(objects[PREPROCESSOR_FILE], model, evaluation, version, hashes)
    # A smoke prediction: a pickle that loads but holds garbage should fail here, not on the first request.
    probe = loaded.predict_proba(np.zeros((1, len(FEATURE_NAMES))) + 1.0)
    if probe.shape != (1,):
        raise ModelLoadError(f"{home.path(MODEL_FILE)} returned an unexpected shape {probe.shape}")
    return loaded


def library_versions() -> dict:
    return {"scikit_learn": sklearn.__version__, "numpy": np.__version__, "joblib": joblib.__version__}


def model_type(model) -> str:
    return f"{type(model).__module__}.{type(model).__name__}"


def file_exists(home: Home, relative: str) -> bool:
    return Path(home.path(relative)).is_file()
