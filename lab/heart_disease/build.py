"""Build an installation: data, two good model versions as backups, the live files, config.

    python -m lab.heart_disease.build --home DIR [--api-port 18101] [--worker-port 18102] [--rebuild]

Deterministic: the data, the split and both trainings are seeded. Fails (exit 1) if a version is under
the quality floor on the held-out test set.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from . import dataset, modeling, versions
from .common import DEFAULT_API_PORT, DEFAULT_WORKER_PORT, Home, default_config, load_config, write_config, write_json

DATA_SEED = 42
N_ROWS = 2000
N_TEST = 300
N_SAMPLE = 300
# One training seed per good version; the last one is made live.
GOOD_SEEDS = (11, 23)
DIRECTORIES = ("models", "data/raw", "data/processed", "data/validation", "backups", "config", "logs", "run",
               "queue/incoming", "queue/done", "queue/failed", "public")


def splits() -> dict:
    """The fixed train / test / validation-sample split of the synthetic data."""
    X, y = dataset.generate(N_ROWS, DATA_SEED)
    order = np.random.default_rng(DATA_SEED + 1).permutation(N_ROWS)
    test, sample, train = order[:N_TEST], order[N_TEST:N_TEST + N_SAMPLE], order[N_TEST + N_SAMPLE:]
    return {"all": (X, y), "train": (X[train], y[train]), "test": (X[test], y[test]), "sample": (X[sample], y[sample])}


def reference_stats(X: np.ndarray) -> dict:
    """Per-feature mean and standard deviation of the training data: the worker's drift baseline."""
    return {
        name: {"mean": round(float(X[:, index].mean()), 4), "std": round(float(X[:, index].std()) or 1.0, 4)}
        for index, name in enumerate(dataset.FEATURE_NAMES)
    }


def stage_version(home: Home, preprocessor, model, evaluation: dict, metrics: dict, created_at: datetime,
                  extra: dict) -> str:
    """Write a version's files to a staging tree and archive them as a backup; the live files are untouched."""
    staging = Path(tempfile.mkdtemp(dir=home.root, prefix=".staging_"))
    try:
        modeling.save(Home(staging), preprocessor, model, evaluation)
        return versions.create_backup(home, staging, metrics, created_at=created_at, extra=extra)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def evaluation_record(model, metrics: dict, seed: int, n_train: int, trained_at: datetime) -> dict:
    return {
        "model_type": modeling.model_type(model),
        "metrics": metrics,
        "training_seed": seed,
        "n_train": n_train,
        "trained_at": trained_at.isoformat().replace("+00:00", "Z"),
        "feature_names": list(dataset.FEATURE_NAMES),
        "libraries": modeling.library_versions(),
    }


def train_version(home: Home, data: dict, seed: int, created_at: datetime, label_permutation_seed: int | None = None,
                  check_floor: bool = True) -> tuple[str, dict]:
    """Train, evaluate on the test split and archive one version. A permutation seed trains on shuffled labels."""
    X_train, y_train = data["train"]
    if label_permutation_seed is not None:
        y_train = np.random.default_rng(label_permutation_seed).permutation(y_train)
    preprocessor, model = modeling.train(X_train, y_train, seed=seed)
    metrics = modeling.evaluate(preprocessor, model, *data["test"])
    if check_floor:
        failures = modeling.below_floor(metrics)
        if failures:
            detail = ", ".join(f"{name} {value} < {floor}" for name, (value, floor) in failures.items())
            raise SystemExit(f"model trained with seed {seed} is under the quality floor: {detail}")
    evaluation = evaluation_record(model, metrics, seed, int(y_train.size), created_at)
    extra = {"model_type": evaluation["model_type"], "training_seed": seed, "n_train": int(y_train.size),
             "n_test": int(data["test"][1].size), "libraries": evaluation["libraries"]}
    version = stage_version(home, preprocessor, model, evaluation, metrics, created_at, extra)
    return version, metrics


def ensure_config(home: Home, api_port: int, worker_port: int) -> None:
    """Create the config with fresh secrets unless one exists (a rebuild keeps credentials); force mode 0600."""
    if home.config.exists():
        load_config(home)
        home.config.chmod(0o600)
        return
    write_config(home, default_config(api_port, worker_port))


def build(home: Home, api_port: int = DEFAULT_API_PORT, worker_port: int = DEFAULT_WORKER_PORT,
          rebuild: bool = False) -> dict:
    started = time.monotonic()
    if rebuild:
        for sub in ("models", "backups", "data"):
            shutil.rmtree(home.path(sub), ignore_errors=True)
    elif versions.current_version(home) and versions.list_versions(home):
        return {"home": str(home.root), "built": False, "current": versions.current_version(home),
                "versions": versions.list_versions(home)}
    for sub in DIRECTORIES:
        home.path(sub).mkdir(parents=True, exist_ok=True)
    home.public.chmod(0o755)
    ensure_config(home, api_port, worker_port)

    data = splits()
    dataset.write_csv(home.path("data/raw/heart.csv"), *data["all"])
    dataset.write_csv(home.sample, *data["sample"])
    write_json(home.reference_stats, reference_stats(data["train"][0]))

    now = datetime.now(timezone.utc).replace(microsecond=0)
    built = {}
    for age_hours, seed in zip(range(len(GOOD_SEEDS), 0, -1), GOOD_SEEDS):
        version, metrics = train_version(home, data, seed, now - timedelta(hours=age_hours))
        built[version] = metrics
    live = list(built)[-1]
    versions.install(home, live)
    sample_metrics = modeling.evaluate(*_pair(home), *data["sample"])
    return {
        "home": str(home.root),
        "built": True,
        "current": live,
        "versions": {version: {name: metrics[name] for name in ("accuracy", "roc_auc", "f1")}
                     for version, metrics in built.items()},
        "sample_metrics": {name: sample_metrics[name] for name in ("accuracy", "roc_auc", "f1")},
        "seconds": round(time.monotonic() - started, 2),
    }


def _pair(home: Home):
    loaded = modeling.load(home)
    return loaded.preprocessor, loaded.model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.heart_disease.build", description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="installation directory (created if missing)")
    parser.add_argument("--api-port", type=int, default=DEFAULT_API_PORT, help="API port written to a new config")
    parser.add_argument("--worker-port", type=int, default=DEFAULT_WORKER_PORT, help="worker port written to a new config")
    parser.add_argument("--rebuild", action="store_true", help="wipe models/, backups/ and data/ and build again")
    args = parser.parse_args(argv)
    home = Home.of(args.home)
    home.root.mkdir(parents=True, exist_ok=True)
    summary = build(home, args.api_port, args.worker_port, args.rebuild)
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
