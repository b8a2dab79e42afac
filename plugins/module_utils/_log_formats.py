# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Log line parsers, level names, timestamps and error fingerprints for log_query.

Plain Python, no Ansible: every parser takes one decoded line and returns a
``Record`` or ``None``; none of them raises on arbitrary input.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Optional

# Canonical level names and their numeric order (Python logging / Loguru scale).
LEVEL_NUMBERS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
LEVEL_ALIASES = {
    "TRACE": "TRACE",
    "DEBUG": "DEBUG",
    "VERBOSE": "DEBUG",
    "INFO": "INFO",
    "INFORMATION": "INFO",
    "NOTICE": "INFO",
    "SUCCESS": "SUCCESS",
    "WARN": "WARNING",
    "WARNING": "WARNING",
    "ERR": "ERROR",
    "ERROR": "ERROR",
    "CRIT": "CRITICAL",
    "CRITICAL": "CRITICAL",
    "FATAL": "CRITICAL",
    "ALERT": "CRITICAL",
    "EMERG": "CRITICAL",
    "EMERGENCY": "CRITICAL",
}
# GELF carries syslog severities: 0 emerg … 7 debug.
SYSLOG_LEVELS = {0: "CRITICAL", 1: "CRITICAL", 2: "CRITICAL", 3: "ERROR", 4: "WARNING", 5: "INFO", 6: "INFO", 7: "DEBUG"}

FORMATS = ("json", "loguru_text", "python_logging", "logfmt", "text")
# Formats whose records may continue on the following lines (tracebacks).
MULTILINE_FORMATS = frozenset(("loguru_text", "python_logging", "text"))


_LEVEL_CACHE: dict = {}


def normalise_level(value: Any) -> Optional[str]:
    """Map a level as any format writes it (name, alias, syslog or Python number) to a canonical name."""
    if isinstance(value, str):
        try:
            return _LEVEL_CACHE[value]
        except KeyError:
            pass
        result = _normalise_level(value)
        if len(_LEVEL_CACHE) < 1000:  # bounded: levels are few, garbage is not
            _LEVEL_CACHE[value] = result
        return result
    return _normalise_level(value)


def _normalise_level(value: Any) -> Optional[str]:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = int(value)
        if 0 <= number <= 7:
            return SYSLOG_LEVELS[number]
        for name in ("CRITICAL", "ERROR", "WARNING", "SUCCESS", "INFO", "DEBUG"):
            if number >= LEVEL_NUMBERS[name]:
                return name
        return "TRACE" if number > 0 else None
    text = str(value).strip()
    if text.isdigit():
        return normalise_level(int(text))
    return LEVEL_ALIASES.get(text.upper())


def aliases_of(levels) -> list[str]:
    """Every spelling (upper case) that normalises to one of ``levels``."""
    wanted = set(levels)
    return sorted(alias for alias, canonical in LEVEL_ALIASES.items() if canonical in wanted)


# --- timestamps -------------------------------------------------------------------------------

_TS_RE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?)?\s*(Z|z|UTC|[+-]\d\d(?::?\d\d)?)?$"
)


def tz_from_name(name: str) -> tzinfo:
    """``UTC``, ``local``, an offset like ``+02:00`` or an IANA zone name; ValueError otherwise."""
    text = (name or "").strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    if text.lower() == "local":
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else timezone.utc
    match = re.fullmatch(r"([+-])(\d\d):?(\d\d)", text)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        from zoneinfo import ZoneInfo  # pylint: disable=import-outside-toplevel
        return ZoneInfo(text)
    except Exception as exc:  # zoneinfo raises several unrelated types for bad names
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_timestamp(value: Any, default_tz: tzinfo = timezone.utc) -> Optional[float]:
    """Epoch seconds from an ISO 8601 string (naive ones in ``default_tz``) or a number; None if not a time."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        if number > 1e11:  # milliseconds since the epoch
            number /= 1000.0
        return number if 0 < number < 1e11 else None
    text = str(value).strip()
    if not text or len(text) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = _parse_iso_fallback(text)
        if parsed is None:
            try:
                return parse_timestamp(float(text), default_tz)
            except ValueError:
                return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def _parse_iso_fallback(text: str) -> Optional[datetime]:
    """ISO forms ``fromisoformat`` refuses on older Pythons (``Z``, comma fractions, any fraction length)."""
    match = _TS_RE.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, frac, zone = match.groups()
    try:
        micro = int((frac or "0")[:6].ljust(6, "0"))
        result = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro)
    except ValueError:
        return None
    if zone:
        if zone.upper() in ("Z", "UTC"):
            return result.replace(tzinfo=timezone.utc)
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        return result.replace(tzinfo=timezone(sign * offset))
    return result


def iso(ts: Optional[float]) -> Optional[str]:
    """Epoch seconds as ISO 8601 UTC, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="microseconds")


# --- records ----------------------------------------------------------------------------------

class Record:
    """One log record, whatever format it came from."""

    __slots__ = ("ts", "level", "message", "logger", "exc_type", "exc_value", "traceback", "fields", "raw", "fmt", "_kv")

    def __init__(self, fmt: str, raw: str, ts: Optional[float] = None, level: Optional[str] = None, message: str = "",
                 logger: Optional[str] = None, fields: Optional[dict] = None) -> None:
        self.fmt = fmt
        self.raw = raw
        self.ts = ts
        self.level = level
        self.message = message if isinstance(message, str) else ("" if message is None else str(message))
        self.logger = logger if logger is None or isinstance(logger, str) else str(logger)
        self.fields = fields if fields is not None else {}
        self.exc_type: Optional[str] = None
        self.exc_value: Optional[str] = None
        self.traceback: Optional[str] = None
        self._kv: Optional[dict] = None

    def kv(self) -> dict:
        """``key=value`` pairs found in the message (computed once, on demand)."""
        if self._kv is None:
            self._kv = extract_kv(self.message) if "=" in self.message else {}
        return self._kv

    def get(self, name: str) -> Any:
        """A field by name: structured fields first, then ``key=value`` in the message, then the built-ins."""
        if name in self.fields:
            return self.fields[name]
        kv = self.kv()
        if name in kv:
            return kv[name]
        if name in ("logger", "name"):
            return self.logger
        if name == "message":
            return self.message
        if name == "level":
            return self.level
        if name in ("exception_type", "exc_type"):
            return self.exc_type
        return None

    def add_continuation(self, line: str) -> None:
        """Attach a line that follows a text record (traceback); learn the exception from it."""
        self.raw = f"{self.raw}\n{line}" if len(self.raw) < 65536 else self.raw
        if self.traceback is None:
            if not line.startswith("Traceback"):
                return
            self.traceback = line
            return
        if len(self.traceback) < 16384:
            self.traceback = f"{self.traceback}\n{line}"
        match = _EXC_LINE_RE.match(line)
        if match:
            self.exc_type, self.exc_value = match.group(1), match.group(2)


_EXC_LINE_RE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Fault|Timeout|Failure|[A-Z]\w*)):\s?(.*)$")
_KV_RE = re.compile(r"""(?<![\w.\-/])([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|'[^']*'|[^\s"',;]*)""")


def extract_kv(text: str) -> dict:
    """``key=value`` / ``key="quoted value"`` pairs in free text."""
    result = {}
    for key, value in _KV_RE.findall(text):
        if value[:1] in ('"', "'") and len(value) >= 2 and value[-1] == value[0]:
            value = value[1:-1].replace('\\"', '"') if value[0] == '"' else value[1:-1]
        result.setdefault(key, value)
    return result


def _exception_from(value: Any, record: Record) -> None:
    if isinstance(value, dict):
        exc_type = value.get("type")
        record.exc_type = str(exc_type) if exc_type is not None else None
        exc_value = value.get("value")
        record.exc_value = None if exc_value is None else str(exc_value)
        trace = value.get("traceback")
        record.traceback = trace if isinstance(trace, str) else None
    elif isinstance(value, str) and value:
        # Some JSON formatters write the formatted traceback as a string.
        record.traceback = value
        for line in reversed(value.strip().splitlines()):
            match = _EXC_LINE_RE.match(line)
            if match:
                record.exc_type, record.exc_value = match.group(1), match.group(2)
                break


# --- JSON (flat Loguru-shaped, Loguru serialize=True, GELF) -------------------------------------

_TS_KEYS = ("timestamp", "time", "ts", "@timestamp", "asctime", "datetime", "date")
_LEVEL_KEYS = ("level", "levelname", "severity", "lvl", "log.level", "loglevel")
_MSG_KEYS = ("message", "msg", "short_message", "log")
_LOGGER_KEYS = ("logger", "logger_name", "name")
_EXC_KEYS = ("exception", "exc_info", "exc")


_RAW_DECODE = json.JSONDecoder().raw_decode


def parse_json(line: str, default_tz: tzinfo = timezone.utc) -> Optional[Record]:
    """A JSON object line in any of the three JSON shapes."""
    try:
        obj, end = _RAW_DECODE(line, len(line) - len(line.lstrip()))
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or line[end:].strip():
        return None
    try:
        inner = obj.get("record")
        if isinstance(inner, dict) and isinstance(inner.get("level"), dict):
            return _loguru_serialized(obj, inner, line, default_tz)
        if "short_message" in obj:
            return _gelf(obj, line, default_tz)
        return _flat_json(obj, line, default_tz)
    except (TypeError, ValueError, AttributeError):
        return None


def _pop_first(obj: dict, keys) -> Any:
    for key in keys:
        if key in obj:
            return obj.pop(key)
    return None


def _flat_json(obj: dict, line: str, default_tz: tzinfo) -> Record:
    # Pop the standard keys; what remains (a fresh dict from json.loads) is the fields.
    # The Residency Scheduler's own key names first, without a loop.
    ts_value = obj.pop("timestamp") if "timestamp" in obj else _pop_first(obj, _TS_KEYS)
    level_value = obj.pop("level") if "level" in obj else _pop_first(obj, _LEVEL_KEYS)
    message = obj.pop("message") if "message" in obj else _pop_first(obj, _MSG_KEYS)
    logger = obj.pop("logger") if "logger" in obj else _pop_first(obj, _LOGGER_KEYS)
    exc_value = _pop_first(obj, _EXC_KEYS)
    record = Record("json", line, parse_timestamp(ts_value, default_tz), normalise_level(level_value), message, logger, obj)
    if exc_value:
        _exception_from(exc_value, record)
    return record


def _loguru_serialized(obj: dict, rec: dict, line: str, default_tz: tzinfo) -> Record:
    time_info = rec.get("time")
    ts = None
    if isinstance(time_info, dict):
        ts = parse_timestamp(time_info.get("timestamp"), default_tz)
        if ts is None:
            ts = parse_timestamp(time_info.get("repr"), default_tz)
    else:
        ts = parse_timestamp(time_info, default_tz)
    level_info = rec.get("level") or {}
    level = normalise_level(level_info.get("name")) or normalise_level(level_info.get("no"))
    fields = dict(rec.get("extra") or {})
    for key in ("module", "function", "line", "file"):
        value = rec.get(key)
        if isinstance(value, dict):
            value = value.get("name")
        if value is not None:
            fields.setdefault(key, value)
    for key in ("process", "thread"):
        value = rec.get(key)
        if isinstance(value, dict):
            value = value.get("id")
        if value is not None:
            fields.setdefault(key, value)
    message = rec.get("message")
    if not isinstance(message, str):  # an empty message is a message: the text is the formatted line, not it
        message = obj.get("text", "")
    record = Record("json", line, ts, level, message, rec.get("name"), fields)
    exc = rec.get("exception")
    if isinstance(exc, dict):
        record.exc_type = None if exc.get("type") is None else str(exc.get("type"))
        record.exc_value = None if exc.get("value") is None else str(exc.get("value"))
        text = obj.get("text")
        if isinstance(text, str) and "Traceback" in text:
            record.traceback = text[text.index("Traceback"):]
    return record


def _gelf(obj: dict, line: str, default_tz: tzinfo) -> Record:
    fields = {k[1:]: v for k, v in obj.items() if k.startswith("_") and len(k) > 1}
    if "host" in obj:
        fields.setdefault("host", obj["host"])
    logger = fields.pop("logger_name", None) or fields.pop("logger", None)
    record = Record("json", line, parse_timestamp(obj.get("timestamp"), default_tz), normalise_level(obj.get("level")),
                    obj.get("short_message", ""), logger, fields)
    full = obj.get("full_message")
    exc_type = fields.pop("exception_type", None) or fields.pop("exc_type", None)
    if isinstance(full, str) and full:
        _exception_from(full, record)
    if exc_type:
        record.exc_type = str(exc_type)
    return record


# --- text formats -----------------------------------------------------------------------------

_TS_PART = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_LOGURU_TEXT_RE = re.compile(r"^(" + _TS_PART + r")\s*\|\s*([A-Za-z]+)\s*\|\s*([^\s|]*?):([^\s:|]*):(\d+)\s+-\s?(.*)$", re.DOTALL)
_PYLOG_RE = re.compile(r"^(" + _TS_PART + r")\s+-\s+(\S+)\s+-\s+([A-Za-z]+)\s+-\s?(.*)$", re.DOTALL)
_LEADING_TS_RE = re.compile(r"^\[?(" + _TS_PART + r")\]?\s*(?:\[?([A-Za-z]+)\]?\s*[:|-]?\s)?")
_LOGFMT_RE = re.compile(r"""([A-Za-z_@][\w.\-]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)""")
_LOGFMT_CORE_KEYS = frozenset(("time", "ts", "timestamp", "level", "lvl", "msg", "message", "severity"))


def _with_kv(record: Record) -> Record:
    # Text formats: key=value pairs in the message become fields (the runbook greps for ip=…).
    if "=" in record.message:
        record.fields = record.kv()
    return record


def parse_loguru_text(line: str, default_tz: tzinfo = timezone.utc) -> Optional[Record]:
    """``2026-11-23 09:14:03.123 | ERROR    | app.api.routes:get_schedule:42 - message``."""
    match = _LOGURU_TEXT_RE.match(line)
    if not match:
        return None
    stamp, level, name, function, lineno, message = match.groups()
    level_name = normalise_level(level)
    if level_name is None:
        return None
    record = Record("loguru_text", line, parse_timestamp(stamp, default_tz), level_name, message, name)
    _with_kv(record)
    record.fields.update(function=function, line=int(lineno))
    return record


def parse_python_logging(line: str, default_tz: tzinfo = timezone.utc) -> Optional[Record]:
    """``%(asctime)s - %(name)s - %(levelname)s - %(message)s``."""
    match = _PYLOG_RE.match(line)
    if not match:
        return None
    stamp, name, level, message = match.groups()
    level_name = normalise_level(level)
    if level_name is None:
        return None
    return _with_kv(Record("python_logging", line, parse_timestamp(stamp, default_tz), level_name, message, name))


def parse_logfmt(line: str, default_tz: tzinfo = timezone.utc) -> Optional[Record]:
    """``time=… level=error msg="auth_failure" ip=203.0.113.7``: a line made of key=value pairs."""
    pairs = _LOGFMT_RE.findall(line)
    if len(pairs) < 2:
        return None
    fields = {}
    covered = 0
    for key, value in pairs:
        covered += len(key) + len(value) + 1
        if value[:1] == '"' and len(value) >= 2 and value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        fields[key] = value
    # Mostly pairs, and at least one of the keys logfmt loggers always write.
    if covered < 0.7 * len(line.strip()) or not _LOGFMT_CORE_KEYS.intersection(fields):
        return None
    ts = None
    for key in ("time", "ts", "timestamp"):
        if key in fields:
            ts = parse_timestamp(fields.pop(key), default_tz)
            break
    level = None
    for key in ("level", "lvl", "severity"):
        if key in fields:
            level = normalise_level(fields.pop(key))
            break
    message = fields.pop("msg", None)
    if message is None:
        message = fields.pop("message", "")
    logger = fields.pop("logger", None)
    record = Record("logfmt", line, ts, level, message, logger, fields)
    for key, value in record.kv().items():
        record.fields.setdefault(key, value)
    exc = fields.pop("exception", None) or fields.pop("error", None)
    if exc:
        record.exc_value = exc
        record.exc_type = fields.pop("exception_type", None) or fields.pop("error_type", None)
    return record


def parse_text(line: str, default_tz: tzinfo = timezone.utc) -> Record:
    """Any line: a leading timestamp and level word if there are some, key=value pairs as fields."""
    match = _LEADING_TS_RE.match(line)
    ts = level = None
    message = line
    if match:
        ts = parse_timestamp(match.group(1), default_tz)
        level = normalise_level(match.group(2)) if match.group(2) else None
        message = line[match.end():] if level else line[match.end(1):].lstrip(" ]-|:")
    return _with_kv(Record("text", line, ts, level, message))


def parse_line(line: str, fmt: str = "auto", default_tz: tzinfo = timezone.utc, strict_text: bool = True) -> Optional[Record]:
    """One line in ``fmt`` (or detected when ``auto``); None when it is not a record of that format.

    In ``auto`` mode a line that matches no structured format is a ``text`` record only if it has a
    leading timestamp or key=value pairs (``strict_text``); otherwise the caller decides whether it
    continues the previous record or is unparsable.
    """
    try:
        return _parse_line(line, fmt, default_tz, strict_text)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None


def _parse_line(line: str, fmt: str, default_tz: tzinfo, strict_text: bool) -> Optional[Record]:
    if fmt == "json":
        return parse_json(line, default_tz) if line.lstrip()[:1] == "{" else None
    if fmt == "loguru_text":
        return parse_loguru_text(line, default_tz)
    if fmt == "python_logging":
        return parse_python_logging(line, default_tz)
    if fmt == "logfmt":
        return parse_logfmt(line, default_tz)
    if fmt == "text":
        return parse_text(line, default_tz)
    first = line[:1]
    if first == "{":
        return parse_json(line, default_tz)
    if first.isdigit():
        record = parse_loguru_text(line, default_tz) or parse_python_logging(line, default_tz)
        if record is not None:
            return record
    if "=" in line:
        record = parse_logfmt(line, default_tz)
        if record is not None:
            return record
    if first.isspace() or not first:
        return None
    record = parse_text(line, default_tz)
    if strict_text and record.ts is None and not record.fields:
        return None
    return record


# --- fingerprints -----------------------------------------------------------------------------

_QUOTED_RE = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_UUID_RE = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_IP_RE = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")
_HEX_RE = re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b")
_NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d+)?")
_DIGITS_1_TO_9_AS_1 = str.maketrans("23456789", "11111111")
_NORMALISED: dict = {}
_NORMALISED_MAX = 4096  # about 3 MiB at most


def normalise_message(message: str, limit: int = 300) -> str:
    """The message with ids, numbers, addresses and quoted values replaced, so variants group together.

    Memoised on the message with the digits 2-9 turned into 1: the rules below tell no
    digit from another except 0 (in ``0x``) and no digit survives them, so messages equal
    under that mapping normalise equally; most repeated errors differ only in their numbers.
    """
    text = message[:limit]
    key = text.translate(_DIGITS_1_TO_9_AS_1)
    result = _NORMALISED.get(key)
    if result is None:
        result = _normalise(text)
        if len(_NORMALISED) >= _NORMALISED_MAX:  # bounded: forget everything rather than grow
            _NORMALISED.clear()
        _NORMALISED[key] = result
    return result


def _normalise(text: str) -> str:
    # Each pass only where it can match.
    if "'" in text or '"' in text or "`" in text:
        text = _QUOTED_RE.sub("<str>", text)
    if len(text) >= 36 and "-" in text:
        text = _UUID_RE.sub("<uuid>", text)
    if text.count(".") >= 3:
        text = _IP_RE.sub("<ip>", text)
    if len(text) >= 8:
        text = _HEX_RE.sub("<hex>", text)
    text = _NUMBER_RE.sub("<n>", text)
    return " ".join(text.split())


def fingerprint(record: Record) -> str:
    """Exception type (if any) plus the normalised first line of the message."""
    return fingerprint_of(record.message, record.exc_type)


def fingerprint_of(message: str, exc_type: Optional[str]) -> str:
    base = normalise_message(message.split("\n", 1)[0])
    return f"{exc_type}: {base}" if exc_type else base
