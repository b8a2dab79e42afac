"""Paths, configuration, hashing, logging and pid files shared by the build, API, worker and faults."""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
API_VERSION = "1.4.2"
DEFAULT_API_PORT = 18101
DEFAULT_WORKER_PORT = 18102
# The files a model version is made of, relative to the home directory.
MODEL_FILE = "models/sklearn_mlp_model.joblib"
EVALUATION_FILE = "models/evaluation_results.joblib"
PREPROCESSOR_FILE = "data/processed/preprocessor.joblib"
VERSION_FILES = (MODEL_FILE, EVALUATION_FILE, PREPROCESSOR_FILE)
QUALITY_FLOOR = {"accuracy": 0.80, "roc_auc": 0.85, "f1": 0.75}
KEEP_BACKUPS = 5
# How much of an API key is safe to log: "hdk_" + 8 hex characters of 40.
KEY_ID_LENGTH = 12


@dataclass(frozen=True)
class Home:
    """The layout of one installation under its home directory (``/opt/heart-disease`` on a real host)."""

    root: Path

    @classmethod
    def of(cls, path: str | Path) -> Home:
        return cls(Path(path).resolve())

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def version_file(self) -> Path:
        return self.models / "VERSION"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def config(self) -> Path:
        return self.root / "config" / "config.yaml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    @property
    def sample(self) -> Path:
        return self.root / "data" / "validation" / "sample.csv"

    @property
    def reference_stats(self) -> Path:
        return self.root / "data" / "processed" / "reference_stats.json"

    @property
    def public(self) -> Path:
        """A world-readable directory (think: a static web root): where the leaked-credential fault leaks."""
        return self.root / "public"

    @property
    def lab_state(self) -> Path:
        """The lab's own bookkeeping (which faults are on); not part of the real system."""
        return self.root / ".lab"

    def pid_file(self, service: str) -> Path:
        return self.run / f"{service}.pid"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write via a temporary file in the same directory and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, data, mode: int = 0o644) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def key_id(api_key: str) -> str:
    """The loggable prefix of an API key."""
    return api_key[:KEY_ID_LENGTH]


def new_api_key() -> str:
    return "hdk_" + secrets.token_hex(20)


def default_config(api_port: int = DEFAULT_API_PORT, worker_port: int = DEFAULT_WORKER_PORT) -> dict:
    return {
        "api": {
            "host": "127.0.0.1",
            "port": api_port,
            "auth": {
                "secret_key": secrets.token_hex(32),
                "algorithm": "HS256",
                "access_token_expire_minutes": 30,
                # Tokens signed with one of these still verify: lets a rotation overlap old and new.
                "previous_secret_keys": [],
                "api_keys": [new_api_key(), new_api_key()],
            },
            "batch_max_size": 1000,
        },
        "worker": {"port": worker_port, "poll_interval_seconds": 1.0, "drift_window": 200},
        "model": {"decision_threshold": 0.5},
        "logging": {"level": "INFO"},
    }


def write_config(home: Home, config: dict) -> None:
    home.config.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(home.config, yaml.safe_dump(config, sort_keys=False), mode=0o600)


class ConfigError(ValueError):
    """The configuration file is missing or lacks a required setting."""


def load_config(home: Home) -> dict:
    """Read and check ``config/config.yaml``; raises ConfigError naming what is wrong."""
    try:
        config = yaml.safe_load(home.config.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {home.config} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {home.config} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"config file {home.config} must hold a mapping")
    auth = (config.get("api") or {}).get("auth") or {}
    if not isinstance(auth.get("secret_key"), str) or len(auth["secret_key"]) < 16:
        raise ConfigError("api.auth.secret_key must be a string of at least 16 characters")
    keys = auth.get("api_keys")
    if not isinstance(keys, list) or not all(isinstance(key, str) and key for key in keys):
        raise ConfigError("api.auth.api_keys must be a list of non-empty strings")
    return config


def setup_logging(log_file: Path, level: str = "INFO", also_stderr: bool = True) -> None:
    """Log in the real system's format to ``log_file`` (and stderr, which systemd sends to the journal)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(LOG_FORMAT)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    # WatchedFileHandler reopens the file after logrotate moves it.
    file_handler = logging.handlers.WatchedFileHandler(log_file)
    file_handler.setFormatter(formatter)
    root.addHandler(file_handler)
    if also_stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        root.addHandler(stream)
    root.setLevel(level)


def write_pid(home: Home, service: str) -> None:
    home.run.mkdir(parents=True, exist_ok=True)
    atomic_write(home.pid_file(service), f"{os.getpid()}\n")


def remove_pid(home: Home, service: str) -> None:
    pid_file = home.pid_file(service)
    try:
        if int(pid_file.read_text().strip()) == os.getpid():
            pid_file.unlink()
    except (FileNotFoundError, ValueError):
        pass


def running_pid(home: Home, service: str) -> int | None:
    """The pid in ``run/<service>.pid`` if that process is alive and really is this service."""
    try:
        pid = int(home.pid_file(service).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    if f"lab.heart_disease.{service}" not in cmdline:
        return None
    return pid
