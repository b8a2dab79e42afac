"""Run the stand-in backend: ``python -m scheduler [--port N ...]`` (settings also from the environment)."""

from __future__ import annotations

import sys

import uvicorn
from loguru import logger

from . import config, logs
from .app import create_app


def main(argv: list[str] | None = None) -> int:
    try:
        settings = config.load(argv)
    except ValueError as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_file, settings.log_format, settings.log_level, host=settings.host_id)
    app = create_app(settings)
    logger.info("Starting Residency Scheduler backend (log format {})", settings.log_format)
    # uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown: the lifespan logs the stop.
    uvicorn.run(app, host=settings.bind, port=settings.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
