"""Loguru sinks in the real system's formats: json (flat records), text, logfmt, gelf."""

from __future__ import annotations

import json
import traceback
from pathlib import Path

from loguru import logger

# Loguru's default layout, without the colour markup (the sink is a file).
TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"

# syslog severities, for GELF's numeric level
_SYSLOG_LEVELS = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def _exception(record) -> dict | None:
    exc = record["exception"]
    if exc is None or exc.type is None:
        return None
    return {
        "type": exc.type.__name__,
        "value": str(exc.value),
        "traceback": "".join(traceback.format_exception(exc.type, exc.value, exc.traceback)),
    }


def flat_record(record) -> dict:
    """One log record as the flat JSON object the real backend writes."""
    out = {
        "timestamp": record["time"].isoformat(),
        "level": record["level"].name,
        "logger": record["name"],
        "message": record["message"],
        "module": record["module"],
        "function": record["function"],
        "line": record["line"],
        "exception": _exception(record),
        "process": record["process"].id,
        "thread": record["thread"].name,
    }
    out.update((key, value) for key, value in record["extra"].items() if not key.startswith("_"))
    return out


def _logfmt_value(value) -> str:
    text = "" if value is None else str(value)
    if text and not any(ch in text for ch in ' "=\n\t\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _logfmt_line(record) -> str:
    flat = flat_record(record)
    exception = flat.pop("exception")
    if exception:
        flat.update({"exception_type": exception["type"], "exception_value": exception["value"], "traceback": exception["traceback"]})
    return " ".join(f"{key}={_logfmt_value(value)}" for key, value in flat.items())


def _gelf_line(record) -> str:
    flat = flat_record(record)
    exception = flat.pop("exception")
    gelf = {
        "version": "1.1",
        "host": record["extra"].get("host", ""),
        "short_message": flat.pop("message"),
        "timestamp": round(record["time"].timestamp(), 3),
        "level": _SYSLOG_LEVELS.get(flat.pop("level"), 6),
    }
    if exception:
        gelf["full_message"] = exception["traceback"]
        flat.update({"exception_type": exception["type"], "exception_value": exception["value"]})
    flat.pop("timestamp")
    gelf.update(("_" + key, value) for key, value in flat.items() if key != "host")
    return json.dumps(gelf, default=str)


def _line_formatter(render):
    # Loguru formats the returned template with the record: hand it the finished
    # line through extra so braces in messages are never re-interpreted.
    def formatter(record) -> str:
        record["extra"]["_line"] = render(record)
        return "{extra[_line]}\n"

    return formatter


FORMATTERS = {
    "json": _line_formatter(lambda record: json.dumps(flat_record(record), default=str)),
    "logfmt": _line_formatter(_logfmt_line),
    "gelf": _line_formatter(_gelf_line),
    "text": TEXT_FORMAT,
}


def configure(log_file: Path, log_format: str, level: str, **context) -> None:
    """Send every record to ``log_file`` in ``log_format``; ``context`` is bound to all records."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.remove()
    # watch=True reopens the file when logrotate (or a test) moves it away.
    logger.add(str(log_file), format=FORMATTERS[log_format], level=level, colorize=False, backtrace=False, diagnose=False, watch=True)
    logger.configure(extra=context)
