"""Settings from environment variables, overridable on the command line."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, fields
from pathlib import Path

LOG_FORMATS = ("json", "text", "logfmt", "gelf")


@dataclass(frozen=True)
class Settings:
    bind: str = "127.0.0.1"
    port: int = 8000
    host_id: str = socket.gethostname()
    log_file: Path = Path("/var/log/app/scheduler.log")
    log_format: str = "json"
    log_level: str = "INFO"
    releases_dir: Path = Path("/srv/residency-scheduler/releases")
    fault_file: Path = Path("/srv/residency-scheduler/faults.json")
    # The app-level denylist (sre.runbooks.ip_blocklist denylist_file): client addresses refused with 403.
    denylist_file: Path = Path("/srv/residency-scheduler/denylist.json")
    seed: int = 0
    database_url: str = ""  # empty: generated data instead of PostgreSQL
    db_pool_size: int = 5
    db_pool_max_overflow: int = 5
    redis_url: str = ""  # empty: an in-process schedule cache
    schedule_cache_ttl: float = 30.0

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"SCHEDULER_PORT must be a TCP port (1-65535), not {self.port}")

    @property
    def current_link(self) -> Path:
        """The symlink naming the deployed release (``releases/current -> v1.4.1``)."""
        return self.releases_dir / "current"


# field name -> environment variable (the real system's names where it has one)
ENV_NAMES = {
    "bind": "SCHEDULER_BIND",
    "port": "SCHEDULER_PORT",
    "host_id": "SCHEDULER_HOST_ID",
    "log_file": "LOG_FILE",
    "log_format": "LOG_FORMAT",
    "log_level": "LOG_LEVEL",
    "releases_dir": "SCHEDULER_RELEASES_DIR",
    "fault_file": "SCHEDULER_FAULT_FILE",
    "denylist_file": "SCHEDULER_DENYLIST_FILE",
    "seed": "SCHEDULER_SEED",
    "database_url": "DATABASE_URL",
    "db_pool_size": "DB_POOL_SIZE",
    "db_pool_max_overflow": "DB_POOL_MAX_OVERFLOW",
    "redis_url": "REDIS_URL",
    "schedule_cache_ttl": "SCHEDULE_CACHE_TTL",
}
SECRET_FIELDS = ("database_url", "redis_url")  # may carry a password: never shown in --help


def _convert(name: str, raw: str, target: type):
    try:
        return target(raw)
    except ValueError:
        raise ValueError(f"{ENV_NAMES[name]} must be {target.__name__}, not {raw!r}") from None


def load(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings: defaults, then environment, then command line."""
    environ = os.environ if environ is None else environ
    defaults = Settings()
    values = {}
    parser = argparse.ArgumentParser(prog="python -m scheduler", description=__doc__)
    for field in fields(Settings):
        current = getattr(defaults, field.name)
        env_name = ENV_NAMES[field.name]
        if env_name in environ:
            current = _convert(field.name, environ[env_name], type(current))
        values[field.name] = current
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=type(current),
            default=current,
            help=f"(env {env_name}, default {'(set)' if field.name in SECRET_FIELDS and current else current})",
        )
    args = parser.parse_args(argv)
    values.update(vars(args))
    values["log_format"] = values["log_format"].lower()
    values["log_level"] = values["log_level"].upper()
    return Settings(**values)
