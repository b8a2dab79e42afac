# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""log_query: filter, group and analyse application logs without reading them whole.

The runbooks' never-written ``log_parser.py``, ``error_aggregator.py`` and the
FailedAuthenticationSpike ``grep | sort | uniq -c`` in one streaming engine:

* files are read in windows of a few MiB (gzip decompressed in chunks), never whole;
* a time window is found by bisection on byte offsets, so "the last hour" of a
  large file costs a few reads plus the hour itself;
* when a filter implies a literal every matching line must contain (a level
  token, a search string, a field value), only lines containing it are parsed;
  each candidate is then verified, so the prefilter never changes the answer;
* group tables are bounded (``max_groups``; the excess goes to ``__other__``);
* large ranges are split between worker processes.

Entry point: ``run_query(params) -> dict``. Bad input raises ``LogQueryError``
naming the option.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import gzip
import json
import math
import mmap
import os
import pickle
import re
import signal
import threading
import time
from datetime import datetime, timezone
from json.decoder import scanstring
from typing import Any, Iterator, Optional

from ansible_collections.sre.runbooks.plugins.module_utils._log_formats import (
    FORMATS,
    LEVEL_NUMBERS,
    MULTILINE_FORMATS,
    Record,
    aliases_of,
    fingerprint,
    fingerprint_of,
    iso,
    normalise_level,
    parse_line,
    parse_timestamp,
    tz_from_name,
)

WINDOW = 4 << 20             # bytes read and scanned at a time (live files, gzip)
MAP_WINDOW = 16 << 20        # bytes mapped at a time (files at rest)
AT_REST_SECONDS = 300        # a file unmodified this long is not being written, so not truncated
PARALLEL_MIN = 48 << 20      # below this a prefiltered range is scanned in-process
PARALLEL_MIN_FULL = 4 << 20  # the same when every line is parsed (about 40x the work per byte)
SNIFF_BYTES = 64 << 10
SLACK_SECONDS = 60.0         # tolerated disorder of timestamps around since/until
OTHER = "__other__"
# Where the runbooks' systems put the client address and the account of a failed login: the scheduler writes
# ``user=… ip=…``, the ML API ``ip=… key=<key id>``; the first field a record has is used.
AUTH_IP_FIELDS = ("ip", "client_ip", "remote_addr", "source_ip", "src_ip")
AUTH_ACCOUNT_FIELDS = ("account", "user", "username", "user_id", "email", "key")
TIMELINE_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_TIMELINE_SLOTS = 100000  # distinct time slots counted before they are coarsened (about 70 days of minutes)
MAX_WORKERS = 64  # forked scanners; more than the CPUs only adds contention
DEFAULT_TIMEOUT = 300  # seconds; a runbook at 3 a.m. gets a clear error, not a task that never returns
MAX_TIMEOUT = 86400
MISSING = "(missing)"
GROUP_BY_BUILTINS = ("fingerprint", "exception_type", "level", "logger", "message", "none")


class LogQueryError(Exception):
    """Bad input: ``option`` names the module option at fault."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


# --- options ----------------------------------------------------------------------------------

_RELATIVE_RE = re.compile(
    r"^(?:last\s+)?(\d+(?:\.\d+)?)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?)(?:\s+ago)?$", re.I)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def resolve_time(option: str, value: Any, now: float, default_tz) -> Optional[float]:
    """``15m``, ``1h``, ``2d``, ``last 1 hour``, ``now``, ISO 8601 or epoch seconds → epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _showable(option, value, float(value))
    text = str(value).strip()
    if text.lower() == "now":
        return now
    match = _RELATIVE_RE.match(text)
    if match:
        return _showable(option, value, now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)[0].lower()])
    ts = parse_timestamp(text, default_tz)
    if ts is None:
        raise LogQueryError(option, f"{value!r} is neither a duration like 15m, 1h, 2d nor an ISO 8601 time")
    return _showable(option, value, ts)


def _showable(option: str, value: Any, ts: float) -> float:
    """TS if it is a moment the result can show (years 1 to 9999 UTC); ``since: 99999999w`` is an error, not a crash."""
    if not _MIN_TS <= ts <= _MAX_TS:  # also NaN and the infinities
        raise LogQueryError(option, f"{value!r} is outside the years 1 to 9999")
    return ts


_MIN_TS = datetime(1, 1, 2, tzinfo=timezone.utc).timestamp()
_MAX_TS = datetime(9999, 12, 30, tzinfo=timezone.utc).timestamp()


class Query:
    """Validated options, ready to match records."""

    def __init__(self, params: dict) -> None:  # pylint: disable=too-many-statements,too-many-branches
        p = dict(params)
        paths = p.get("path")
        if isinstance(paths, str):
            paths = [paths]
        if not paths or not all(isinstance(x, str) and x for x in paths):
            raise LogQueryError("path", "give a file, a list of files or a glob")
        self.paths = list(paths)
        self.include_rotated = bool(p.get("include_rotated", True))
        self.fmt = p.get("format") or "auto"
        if self.fmt != "auto" and self.fmt not in FORMATS:
            raise LogQueryError("format", f"{self.fmt!r} is not one of auto, {', '.join(FORMATS)}")
        try:
            self.tz = tz_from_name(p.get("default_timezone") or "UTC")
        except ValueError as exc:
            raise LogQueryError("default_timezone", str(exc)) from None
        now = p.get("now")
        self.now = time.time() if now in (None, "") else resolve_time("now", now, time.time(), self.tz)
        self.since = resolve_time("since", p.get("since"), self.now, self.tz)
        self.until = resolve_time("until", p.get("until"), self.now, self.tz)
        if self.since is not None and self.until is not None and self.until < self.since:
            raise LogQueryError("until", f"{iso(self.until)} is before since ({iso(self.since)})")

        self.levels: Optional[frozenset] = None
        if p.get("level") and p.get("levels"):
            raise LogQueryError("levels", "give either level (a minimum) or levels (an exact list), not both")
        if p.get("level"):
            minimum = normalise_level(p["level"])
            if minimum is None:
                raise LogQueryError("level", f"unknown level {p['level']!r}")
            self.levels = frozenset(n for n, v in LEVEL_NUMBERS.items() if v >= LEVEL_NUMBERS[minimum])
        elif p.get("levels"):
            names = set()
            for item in p["levels"]:
                name = normalise_level(item)
                if name is None:
                    raise LogQueryError("levels", f"unknown level {item!r}")
                names.add(name)
            self.levels = frozenset(names)

        self.ignore_case = bool(p.get("ignore_case", False))
        self.search = p.get("search") or None
        self.search_cmp = self.search.lower() if self.search and self.ignore_case else self.search
        self.regex = None
        if p.get("regex"):
            try:
                self.regex = re.compile(p["regex"], re.I if self.ignore_case else 0)
            except re.error as exc:
                raise LogQueryError("regex", f"invalid regular expression {p['regex']!r}: {exc}") from None
        fields = p.get("fields") or {}
        if not isinstance(fields, dict):
            raise LogQueryError("fields", "must be a mapping of field name to value")
        self.fields = {str(k): _as_str_set(v) for k, v in fields.items()}

        self.mode = p.get("mode") or "records"
        if self.mode not in ("records", "auth"):
            raise LogQueryError("mode", f"{self.mode!r} is not records or auth")
        self.auth_event = p.get("auth_event") or "auth_failure"
        self.auth_event_field = p.get("auth_event_field") or "event"
        self.auth_ip_fields = _field_names(p, "auth_ip_field", AUTH_IP_FIELDS)
        self.auth_account_fields = _field_names(p, "auth_account_field", AUTH_ACCOUNT_FIELDS)
        self.auth_timeline_buckets = _positive(p, "auth_timeline_buckets", 60)
        self.auth_accounts_per_ip = _positive(p, "auth_accounts_per_ip", 5)
        self.auth_ips_per_account = _positive(p, "auth_ips_per_account", 5)
        self.auth_timing_min_attempts = _positive(p, "auth_timing_min_attempts", 10)
        max_cv = p.get("auth_timing_max_cv")
        try:
            self.auth_timing_max_cv = 0.25 if max_cv is None else float(max_cv)
        except (TypeError, ValueError):
            raise LogQueryError("auth_timing_max_cv", f"{max_cv!r} is not a number") from None
        if self.auth_timing_max_cv < 0:
            raise LogQueryError("auth_timing_max_cv", "must be zero or more")

        default_group = self.auth_ip_fields[0] if self.mode == "auth" else "fingerprint"
        self.group_by = p.get("group_by") or default_group
        if not isinstance(self.group_by, str) or not self.group_by.strip():
            raise LogQueryError("group_by", "must be fingerprint, exception_type, level, logger, message, none or a field name")
        self.top = _positive(p, "top", 10)
        self.samples = _non_negative(p, "samples", 1)
        self.limit = _non_negative(p, "limit", 20)
        self.max_groups = _positive(p, "max_groups", 10000)
        self.max_message_length = _positive(p, "max_message_length", 500)
        workers = p.get("workers")
        self.workers = _non_negative(p, "workers", 0) if workers is not None else 0
        if self.workers > MAX_WORKERS:
            raise LogQueryError("workers", f"at most {MAX_WORKERS} (0 picks one per idle CPU), got {self.workers}")
        if self.workers == 0:
            self.workers = auto_workers()

    # Filters, cheapest first.
    def in_window(self, ts: Optional[float]) -> bool:
        if self.since is None and self.until is None:
            return True
        if ts is None:
            return False
        return (self.since is None or ts >= self.since) and (self.until is None or ts <= self.until)

    def text_matches(self, raw: str, record: Optional[Record] = None) -> bool:
        """``search`` and ``regex`` against the text as written; for JSON also the decoded message and exception."""
        texts = [raw]
        if record is not None and record.fmt == "json" and "\\" in raw:
            # JSON writers escape quotes, backslashes and (ensure_ascii) every non-ASCII character.
            texts += [t for t in (record.message, record.exc_value, record.traceback) if t]
        if self.search is not None:
            if not any(self.search_cmp in (t.lower() if self.ignore_case else t) for t in texts):
                return False
        return self.regex is None or any(self.regex.search(t) is not None for t in texts)

    def is_auth_event(self, record: Record) -> bool:
        value = record.get(self.auth_event_field)
        return (value is not None and str(value) == self.auth_event) or self.auth_event in record.message

    def matches(self, record: Record) -> bool:
        if not self.in_window(record.ts):
            return False
        if self.levels is not None and record.level not in self.levels:
            return False
        for name, wanted in self.fields.items():
            value = record.get(name)
            if value is None or _scalar_str(value) not in wanted:
                return False
        if not self.text_matches(record.raw, record):
            return False
        return self.mode != "auth" or self.is_auth_event(record)

    @property
    def windowed(self) -> bool:
        return self.since is not None or self.until is not None


def auto_workers() -> int:
    """One worker per CPU that is not busy right now, at most 4.

    Forking onto a saturated CPU only slows the scan down, and a host being diagnosed for
    high CPU should not get more load than it has room for. Busy is the number of runnable
    tasks other than this one (Linux ``/proc/loadavg``; elsewhere the 1-minute load average,
    which also holds this process's own recent work).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return workers_for(cpus, _busy_tasks())


def workers_for(cpus: int, busy: float) -> int:
    return max(1, min(4, cpus, int(cpus - busy + 0.5)))


def _busy_tasks(loadavg: str = "/proc/loadavg") -> float:
    try:
        with open(loadavg, encoding="ascii") as handle:
            return int(handle.read().split()[3].split("/")[0]) - 1
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0] - 1
        except (AttributeError, OSError):
            return 0.0


def _as_str_set(value: Any) -> frozenset:
    if isinstance(value, (list, tuple, set)):
        return frozenset(_scalar_str(v) for v in value)
    return frozenset((_scalar_str(value),))


def _scalar_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field_names(p: dict, name: str, default: tuple) -> tuple:
    """A field name or a list of them (the first one a record has wins)."""
    value = p.get(name)
    if value in (None, "", []):
        return default
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in names):
        raise LogQueryError(name, f"expected a field name or a list of field names, got {value!r}")
    return tuple(x.strip() for x in names)


def first_field(record: Record, names: tuple) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None and value != "":
            return value
    return None


def _whole_number(p: dict, name: str, default: int, minimum: int) -> int:
    value = p.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise LogQueryError(name, f"{value!r} is not a whole number") from None
    if number < minimum:
        raise LogQueryError(name, f"must be {minimum} or more")
    return number


def _positive(p: dict, name: str, default: int) -> int:
    return _whole_number(p, name, default, 1)


def _non_negative(p: dict, name: str, default: int) -> int:
    return _whole_number(p, name, default, 0)


# --- files ------------------------------------------------------------------------------------

_ROTATED_RE = re.compile(r"^(?P<base>.+?)(?:\.(?P<num>\d{1,4})|[.-](?P<date>\d{8}(?:\d{2,6})?))?(?P<gz>\.gz)?$")


def rotation_key(path: str) -> tuple:
    """Oldest first: ``app.log.3.gz``, ``app.log.2.gz``, ``app.log.1``, ``app.log``; dated ones by date."""
    match = _ROTATED_RE.match(os.path.basename(path))
    base = os.path.join(os.path.dirname(path), match.group("base")) if match else path
    if match and match.group("num"):
        return (base, 0, -int(match.group("num")), path)
    if match and match.group("date"):
        return (base, 0, int(match.group("date")) - 10 ** 14, path)
    if match and match.group("gz"):
        return (base, 0, 0, path)
    return (base, 1, 0, path)


def resolve_files(query: Query) -> list[str]:
    found: dict[str, None] = {}
    for pattern in query.paths:
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = [m for m in glob.glob(expanded) if os.path.isfile(m)]
            if not matches:
                raise LogQueryError("path", f"{pattern!r} matched no files")
        else:
            if not os.path.exists(expanded):
                raise LogQueryError("path", f"{pattern} does not exist")
            if not os.path.isfile(expanded):
                raise LogQueryError("path", f"{pattern} is not a regular file")
            matches = [expanded]
            if query.include_rotated:
                siblings = glob.glob(glob.escape(expanded) + ".*") + glob.glob(glob.escape(expanded) + "-*")
                matches += [s for s in siblings if os.path.isfile(s) and _is_rotation_of(s, expanded)]
        for match in matches:
            if not os.access(match, os.R_OK):
                raise LogQueryError("path", f"{match} is not readable")
            found.setdefault(os.path.abspath(match))
    return sorted(found, key=rotation_key)


def _is_rotation_of(candidate: str, base: str) -> bool:
    suffix = candidate[len(base):]
    return re.fullmatch(r"(?:\.\d{1,4}|[.-]\d{8}(?:\d{2,6})?)?(?:\.gz)?", suffix) is not None and suffix != ""


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


# --- per-file profile: format and the exact spelling of levels ----------------------------------

_JSON_LEVEL_KEY_RE = re.compile(rb'"(?:level|levelname|severity|lvl|loglevel)"\s*:\s*"?')
_SERIALIZED_LEVEL_RE = re.compile(rb'"level"\s*:\s*\{[^{}]*?("name"\s*:\s*")')


class Profile:
    """What the head of a file says about the rest of it."""

    def __init__(self) -> None:
        self.fmt = "text"
        self.json_shape: Optional[str] = None   # flat, serialized, gelf
        self.level_prefix: Optional[bytes] = None
        self.numeric_level = False
        self.cases: set = set()
        self.homogeneous = True  # one format (and JSON shape) carries levels in the head

    @property
    def single_line(self) -> bool:
        return self.fmt in ("json", "logfmt")

    def level_needles(self, levels: frozenset) -> Optional[list]:
        """Byte strings of which every record at one of ``levels`` contains at least one; None if unknown."""
        if not self.homogeneous or (not self.cases and not self.numeric_level):
            return None
        if self.numeric_level:
            if self.level_prefix is None:
                return None
            numbers = [n for n in range(8) if normalise_level(n) in levels]
            numbers += [n for n in (5, 10, 20, 25, 30, 40, 50) if normalise_level(n) in levels]
            return [self.level_prefix + str(n).encode() for n in numbers]
        words = set()
        for alias in aliases_of(levels):
            for case in self.cases:
                words.add(alias if case == "upper" else alias.lower() if case == "lower" else alias.title())
        prefix = self.level_prefix or b""
        return _minimal_needles([prefix + w.encode() for w in words])

    def spellings(self) -> dict:
        """Raw level values as this file writes them → canonical names."""
        table = {}
        if self.numeric_level:
            for number in range(60):
                name = normalise_level(number)
                if name:
                    table[str(number).encode()] = name
            return table
        for alias, name in ((a, normalise_level(a)) for a in aliases_of(LEVEL_NUMBERS)):
            for variant in (alias, alias.lower(), alias.title()):
                table[variant.encode()] = name
        return table


def _minimal_needles(needles: list) -> list:
    """Drop needles that contain a shorter one (``ERR`` already finds ``ERROR``)."""
    result = []
    for needle in sorted(set(needles), key=len):
        if not any(short in needle for short in result):
            result.append(needle)
    return result


def _case_of(word: str) -> str:
    return "upper" if word.isupper() else "lower" if word.islower() else "title"


def sniff(head: bytes, fmt: str, default_tz) -> Profile:
    """Detect the format and the level spelling from the first lines of a file."""
    profile = Profile()
    counts: collections.Counter = collections.Counter()
    levelled = set()
    lines = head.split(b"\n")[:-1] if b"\n" in head else [head]
    for raw in lines[:400]:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line.strip():
            continue
        record = parse_line(line, fmt, default_tz)
        if record is None:
            continue
        counts[record.fmt] += 1
        shape = None
        if record.fmt == "json":
            shape = _json_shape(raw)
            if profile.json_shape is None:
                _sniff_json(raw, profile)
        if record.level is not None:
            levelled.add((record.fmt, shape))
        level_word = _raw_level_word(record, raw)
        if level_word:
            profile.cases.add(_case_of(level_word))
    # A level prefilter built from one format's spelling would miss the others' records.
    profile.homogeneous = len(levelled) <= 1
    if counts:
        profile.fmt = counts.most_common(1)[0][0]
    elif fmt != "auto":
        profile.fmt = fmt
    if profile.fmt != "json":
        profile.level_prefix = None
        profile.numeric_level = False
    return profile


def _json_shape(raw: bytes) -> str:
    if b'"record"' in raw and _SERIALIZED_LEVEL_RE.search(raw):
        return "serialized"
    return "gelf" if b'"short_message"' in raw else "flat"


def _sniff_json(raw: bytes, profile: Profile) -> None:
    if b'"record"' in raw and _SERIALIZED_LEVEL_RE.search(raw):
        profile.json_shape = "serialized"
        profile.level_prefix = _SERIALIZED_LEVEL_RE.search(raw).group(1)
        return
    profile.json_shape = "gelf" if b'"short_message"' in raw else "flat"
    match = _JSON_LEVEL_KEY_RE.search(raw)
    if match:
        profile.level_prefix = match.group(0)
        profile.numeric_level = not profile.level_prefix.endswith(b'"')


_WORD_RE = re.compile(r"[A-Za-z]+")


def _raw_level_word(record: Record, raw: bytes) -> Optional[str]:
    """The level as literally written on the line, to learn its case."""
    if record.level is None:
        return None
    text = raw.decode("utf-8", "replace")
    for word in _WORD_RE.findall(text[:400] if record.fmt != "json" else text):
        if normalise_level(word) == record.level and word.upper() in (a for a in aliases_of([record.level])):
            return word
    return None


# --- reading: windows of complete lines ----------------------------------------------------------

def _plain_windows(fd: int, start: int, end: int, stats: dict, at_rest: bool) -> Iterator[tuple]:
    """(buffer, a, b) with buffer[a:b] complete lines, covering [start, end) of a plain file."""
    if at_rest:
        return _mapped_windows(fd, start, end, stats)
    return _read_windows(fd, start, end, stats)


def _read_windows(fd: int, start: int, end: int, stats: dict) -> Iterator[tuple]:
    """preadv into one reused buffer: safe on a live log truncated under us (logrotate copytruncate)."""
    pos = start
    buf = bytearray(WINDOW)
    while pos < end:
        want = min(len(buf), end - pos)
        got = os.preadv(fd, [memoryview(buf)[:want]], pos)
        if not got:  # the file shrank since we looked
            return
        hi = got
        if got < want:  # a short read: the file ends here now, take what is there and stop
            stats["bytes_read"] += got
            yield buf, 0, got
            return
        if pos + got < end:
            newline = buf.rfind(b"\n", 0, got)
            if newline < 0:  # one line longer than the buffer: read it again with a bigger one
                buf = bytearray(len(buf) * 2)
                continue
            hi = newline + 1
        stats["bytes_read"] += hi
        yield buf, 0, hi
        pos += hi


def _mapped_windows(fd: int, start: int, end: int, stats: dict) -> Iterator[tuple]:
    """mmap windows: no copy, measurably faster, but only for files at rest.

    Touching a mapped page beyond a file's end kills the process with SIGBUS, and only a
    file still being written gets truncated (copytruncate, ``> app.log``): those are read
    with ``_read_windows``. The size is checked before each window as well.
    """
    pos = start
    size = MAP_WINDOW
    while pos < end:
        if os.fstat(fd).st_size < end:
            yield from _read_windows(fd, pos, end, stats)
            return
        want = min(size, end - pos)
        aligned = pos - pos % mmap.ALLOCATIONGRANULARITY
        length = (pos - aligned) + want
        buf = mmap.mmap(fd, length, offset=aligned, access=mmap.ACCESS_READ)
        lo, hi = pos - aligned, length
        if pos + want < end:
            newline = buf.rfind(b"\n", lo, hi)
            if newline < 0:  # one line longer than the window: map more
                buf.close()
                size *= 2
                continue
            hi = newline + 1
        try:
            yield buf, lo, hi
        finally:
            buf.close()
        stats["bytes_read"] += hi - lo
        pos = aligned + hi


def _gzip_windows(path: str, stats: dict) -> Iterator[tuple]:
    with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as handle:
        carry = b""
        while True:
            chunk = handle.read(WINDOW)
            stats["bytes_read"] = raw.tell()
            if not chunk:
                if carry:
                    yield carry, 0, len(carry)
                return
            data = carry + chunk
            newline = data.rfind(b"\n")
            if newline < 0:
                carry = data
                continue
            carry = data[newline + 1:]
            yield data, 0, newline + 1


# --- bisection --------------------------------------------------------------------------------

def _first_ts_from(fd: int, pos: int, hi: int, profile: Profile, query: Query) -> tuple:
    """(timestamp, line start) of the first timestamped line starting at or after ``pos`` and before ``hi``."""
    block = 65536
    if pos > 0:
        before = os.pread(fd, 1, pos - 1)
        if before != b"\n":
            data = os.pread(fd, block, pos)
            while True:
                newline = data.find(b"\n")
                if newline >= 0:
                    pos += newline + 1
                    break
                if not data or pos + len(data) >= hi:
                    return None, None
                pos += len(data)
                data = os.pread(fd, block, pos)
    while pos < hi:
        data = os.pread(fd, block, pos)
        if not data:
            return None, None
        lines = data.split(b"\n")
        complete = lines[:-1] if len(lines) > 1 else lines
        for raw in complete:
            if pos >= hi:
                return None, None
            record = parse_line(raw.decode("utf-8", "replace").rstrip("\r"), profile.fmt, query.tz)
            if record is not None and record.ts is not None:
                return record.ts, pos
            pos += len(raw) + 1
        if len(lines) == 1:  # a single line longer than the block: skip it
            pos += len(data)
    return None, None


def bisect_offset(fd: int, size: int, target: float, profile: Profile, query: Query) -> int:
    """Offset of a line start at or before the first record with a timestamp >= ``target``.

    Lines without a timestamp (garbage, tracebacks) are stepped over; when a whole
    stretch has none the search keeps the earlier bound, so it errs towards reading more.
    """
    return _bisect(fd, size, target, profile, query)[0]


def end_offset(fd: int, size: int, target: float, profile: Profile, query: Query) -> int:
    """Offset of the line start of the first timestamped record >= ``target`` (or the end of the file).

    Everything before it has a timestamp < ``target`` or none (continuation lines stay with their record).
    """
    pos = _bisect(fd, size, target, profile, query)[0]  # a line start
    while pos < size:
        data = os.pread(fd, 65536, pos)
        lines = data.split(b"\n")
        at_eof = pos + len(data) >= size
        if len(lines) == 1 and not at_eof:  # one line longer than the block
            pos = _next_line_start(fd, pos + len(data), size)
            continue
        for raw in lines if at_eof else lines[:-1]:
            record = parse_line(_decode(raw), profile.fmt, query.tz)
            if record is not None and record.ts is not None and record.ts >= target:
                return pos
            pos += len(raw) + 1
        if at_eof:
            break
    return size


def _bisect(fd: int, size: int, target: float, profile: Profile, query: Query) -> tuple:
    lo, hi = 0, size
    while hi - lo > 65536:
        mid = (lo + hi) // 2
        ts, line_start = _first_ts_from(fd, mid, hi, profile, query)
        if ts is None or ts >= target:
            hi = mid
        else:
            lo = line_start
    if lo > 0 and os.pread(fd, 1, lo - 1) != b"\n":
        # lo came from a line start or 0 in every branch; keep the invariant explicit.
        data = os.pread(fd, 65536, lo)
        newline = data.find(b"\n")
        lo = lo + newline + 1 if newline >= 0 else lo
    return lo, hi


# --- aggregation ------------------------------------------------------------------------------

class Lazy:
    """A verified line kept for output, parsed only if it is shown."""

    __slots__ = ("raw", "level", "ts")

    def __init__(self, raw: bytes, level: Optional[str], ts: Optional[float]) -> None:
        self.raw, self.level, self.ts = raw, level, ts


class Aggregator:
    """Counts, bounded group tables, the last records, and the auth tables of one scan."""

    def __init__(self, query: Query, path: str) -> None:
        self.q = query
        self.path = path
        self.matched = 0
        self.scanned_lines = 0
        self.unparsed_lines = 0
        self.unparsed_samples: list = []
        self.by_level: collections.Counter = collections.Counter()
        self.groups: dict = {}
        self.records: collections.deque = collections.deque(maxlen=query.limit) if query.limit else collections.deque(maxlen=0)
        self.first_ts: Optional[float] = None
        self.last_ts: Optional[float] = None
        self.by_ip: dict = {}
        self.by_account: dict = {}
        self.auth_step = TIMELINE_STEPS[0]
        self.auth_slots: collections.Counter = collections.Counter()

    def unparsed(self, line: str) -> None:
        self.unparsed_lines += 1
        if len(self.unparsed_samples) < 3:
            self.unparsed_samples.append(line[:200])

    def add(self, record: Record, keep: bool = True) -> None:
        """Count a matching record; ``keep=False`` when the caller orders the kept records itself."""
        self.matched += 1
        self.by_level[record.level or "UNKNOWN"] += 1
        self.seen(record.ts)
        group_by = self.q.group_by
        if group_by != "none":
            self._group(group_key(record, group_by), record.ts, record)
        if keep and self.records.maxlen:
            self.records.append((self.path, record))
        if self.q.mode == "auth":
            self._auth(record)

    def group_raw(self, key: str, ts: Optional[float], buf, start: int, end: int, level: str) -> None:
        """Group a line counted in place; it is parsed only if the group still wants a sample."""
        entry = self.groups.get(key)
        wants_sample = entry is None or len(entry[3]) < self.q.samples
        self._group(key, ts, Lazy(bytes(buf[start:end]), level, ts) if wants_sample else None)

    def add_raw(self, level: str, ts: Optional[float], key: Optional[str], raw: bytes) -> None:
        """A record counted in place during a full scan."""
        self.matched += 1
        self.by_level[level] += 1
        self.seen(ts)
        if key is not None:
            self.group_raw(key, ts, raw, 0, len(raw), level)
        if self.records.maxlen:
            self.records.append((self.path, Lazy(raw, level, ts)))

    def seen(self, ts: Optional[float]) -> None:
        if ts is not None:
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts

    def _group(self, key: str, ts: Optional[float], sample: Any) -> None:
        entry = self.groups.get(key)
        if entry is None:
            if len(self.groups) >= self.q.max_groups:
                key = OTHER
                entry = self.groups.get(key)
            if entry is None:
                entry = self.groups[key] = [0, None, None, []]
        entry[0] += 1
        if ts is not None:
            entry[1] = ts if entry[1] is None or ts < entry[1] else entry[1]
            entry[2] = ts if entry[2] is None or ts > entry[2] else entry[2]
        if sample is not None and len(entry[3]) < self.q.samples:
            # Rendered (and truncated) now: a group table of max_groups entries must stay small.
            entry[3].append(_record_out(self.path, sample, self.q))

    def _auth(self, record: Record) -> None:
        ip = first_field(record, self.q.auth_ip_fields)
        account = first_field(record, self.q.auth_account_fields)
        ip = MISSING if ip is None else _scalar_str(ip)[:200]
        account = MISSING if account is None else _scalar_str(account)[:200]
        _auth_add(self.by_ip, ip, account, record.ts, self.q.max_groups)
        _auth_add(self.by_account, account, ip, record.ts, self.q.max_groups)
        if record.ts is not None:
            self.auth_slots[int(record.ts // self.auth_step)] += 1
            if len(self.auth_slots) > MAX_TIMELINE_SLOTS and self.auth_step < TIMELINE_STEPS[-1]:
                self._coarsen(TIMELINE_STEPS[TIMELINE_STEPS.index(self.auth_step) + 1])

    def _coarsen(self, step: int) -> None:
        """Count the timeline in slots of ``step`` seconds (bounded memory on months of failures)."""
        if step <= self.auth_step:
            return
        slots: collections.Counter = collections.Counter()
        for slot, count in self.auth_slots.items():
            slots[slot * self.auth_step // step] += count
        self.auth_step, self.auth_slots = step, slots

    def merge(self, other: "Aggregator") -> None:
        """Fold in the result of a later range (files and parts are merged in order)."""
        self.matched += other.matched
        self.scanned_lines += other.scanned_lines
        self.unparsed_lines += other.unparsed_lines
        self.unparsed_samples = (self.unparsed_samples + other.unparsed_samples)[:3]
        self.by_level.update(other.by_level)
        self.seen(other.first_ts)
        self.seen(other.last_ts)
        for key, (count, first, last, samples) in other.groups.items():
            entry = self.groups.get(key)
            if entry is None and len(self.groups) >= self.q.max_groups:
                key = OTHER
                entry = self.groups.get(key)
            if entry is None:
                self.groups[key] = [count, first, last, list(samples)]
                continue
            entry[0] += count
            entry[1] = _min(entry[1], first)
            entry[2] = _max(entry[2], last)
            entry[3].extend(samples[: max(0, self.q.samples - len(entry[3]))])
        self.records.extend(other.records)
        for mine, theirs in ((self.by_ip, other.by_ip), (self.by_account, other.by_account)):
            for key, entry in theirs.items():
                _auth_merge(mine, key, entry, self.q.max_groups)
        if other.auth_slots:
            other._coarsen(self.auth_step)  # pylint: disable=protected-access
            self._coarsen(other.auth_step)
            self.auth_slots.update(other.auth_slots)
            while len(self.auth_slots) > MAX_TIMELINE_SLOTS and self.auth_step < TIMELINE_STEPS[-1]:
                self._coarsen(TIMELINE_STEPS[TIMELINE_STEPS.index(self.auth_step) + 1])


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


MAX_DISTINCT = 100  # distinct partners remembered per IP / account: bounds memory, far above any threshold


def _auth_add(table: dict, key: str, partner: str, ts: Optional[float], max_groups: int) -> None:
    entry = table.get(key)
    if entry is None:
        if len(table) >= max_groups:
            key = OTHER
            entry = table.get(key)
        if entry is None:
            # count, first, last, partners, intervals n, sum, sum of squares
            entry = table[key] = [0, None, None, set(), 0, 0.0, 0.0]
    entry[0] += 1
    if ts is not None:
        if entry[2] is not None:
            gap = abs(ts - entry[2])
            entry[4] += 1
            entry[5] += gap
            entry[6] += gap * gap
        entry[1] = _min(entry[1], ts)
        entry[2] = ts if entry[2] is None else max(entry[2], ts)
    if len(entry[3]) < MAX_DISTINCT:
        entry[3].add(partner)


def _auth_merge(table: dict, key: str, other: list, max_groups: int) -> None:
    entry = table.get(key)
    if entry is None:
        if len(table) >= max_groups:
            key = OTHER
            entry = table.get(key)
        if entry is None:
            table[key] = [other[0], other[1], other[2], set(other[3]), other[4], other[5], other[6]]
            return
    if entry[2] is not None and other[1] is not None:
        gap = abs(other[1] - entry[2])
        entry[4] += 1
        entry[5] += gap
        entry[6] += gap * gap
    entry[0] += other[0]
    entry[1] = _min(entry[1], other[1])
    entry[2] = _max(entry[2], other[2])
    entry[3].update(list(other[3])[: max(0, MAX_DISTINCT - len(entry[3]))])
    entry[4] += other[4]
    entry[5] += other[5]
    entry[6] += other[6]


def interval_cv(entry: list) -> Optional[float]:
    """Coefficient of variation of inter-arrival times (std / mean); low means machine-regular."""
    n, total, squares = entry[4], entry[5], entry[6]
    if n < 2 or total <= 0:
        return None
    mean = total / n
    variance = max(0.0, squares / n - mean * mean)
    return math.sqrt(variance) / mean


def group_key(record: Record, group_by: str) -> str:
    if group_by == "fingerprint":
        return fingerprint(record)
    if group_by == "exception_type":
        return record.exc_type or "(no exception)"
    if group_by == "level":
        return record.level or MISSING
    if group_by == "logger":
        return record.logger or MISSING
    if group_by == "message":
        return record.message[:200]
    value = record.get(group_by)
    return MISSING if value is None else _scalar_str(value)[:200]


# --- scanning a range -------------------------------------------------------------------------

class Plan:
    """How one range is read: the literals that select candidate lines and how candidates are verified."""

    def __init__(self, needles: Optional[list], verify_in_place: bool, kind: str) -> None:
        self.needles = needles
        self.verify_in_place = verify_in_place  # check candidates on the raw line, parse only what is shown
        self.kind = kind                # level, search, fields, auth or None
        self.pattern = None
        if needles and len(needles) > 1:
            self.pattern = re.compile(b"|".join(re.escape(n) for n in needles))

    def describe(self) -> Optional[list]:
        if not self.needles:
            return None
        return [n.decode("utf-8", "replace") for n in self.needles]


_ASCII_SAFE = re.compile(r"^[\x20-\x7e]+$")


def _literal_needle(value: str, fmt: str) -> Optional[bytes]:
    """The bytes a value must appear as on the line, if that is certain for this format."""
    if not value or not _ASCII_SAFE.match(value):
        return None
    if fmt == "json" and ('"' in value or "\\" in value or "/" in value):
        return None  # JSON writers may escape these
    return value.encode()


def _text_needles(value: Optional[str], fmt: str) -> Optional[list]:
    """Bytes of which a line matching ``search``/``regex`` holds one: the literal as is, or JSON-escaped."""
    if not value or "\ufffd" in value or "\r" in value or ("\n" in value and fmt != "json"):
        return None
    needles = [value.encode("utf-8")] if "\n" not in value else []
    if fmt == "json":
        escaped = json.dumps(value)[1:-1].encode("ascii")
        if escaped not in needles:
            needles.append(escaped)
    return needles


def required_literal(pattern: "re.Pattern") -> Optional[str]:
    """The longest literal every match of ``pattern`` contains, or None (case-insensitive patterns have none)."""
    try:
        try:
            from re import _parser as sre_parse  # pylint: disable=import-outside-toplevel
        except ImportError:  # Python < 3.11
            import sre_parse  # pylint: disable=import-outside-toplevel,deprecated-module
        parsed = sre_parse.parse(pattern.pattern, pattern.flags)
        state = getattr(parsed, "state", None) or getattr(parsed, "pattern", None)
        if (pattern.flags | getattr(state, "flags", 0)) & re.IGNORECASE:
            return None
        runs: list = []
        _literal_runs(parsed, runs)
    except Exception:  # pylint: disable=broad-exception-caught
        return None  # the private parser changed shape: no prefilter, still correct
    return max(runs, key=len) if runs else None


def _literal_runs(sequence, runs: list) -> None:
    """Runs of literals that sit on every path through ``sequence`` (groups and repeats of at least one)."""
    current: list = []
    for op, arg in sequence:
        name = str(op)
        if name == "LITERAL":
            current.append(chr(arg))
            continue
        if current:
            runs.append("".join(current))
            current = []
        if name == "SUBPATTERN" and not arg[1] & re.IGNORECASE:
            _literal_runs(arg[-1], runs)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and arg[0] >= 1:
            _literal_runs(arg[2], runs)
        elif name == "ATOMIC_GROUP":
            _literal_runs(arg, runs)
    if current:
        runs.append("".join(current))


def plan_for(query: Query, profile: Profile, sample: Optional[tuple]) -> Plan:
    """Pick the most selective literal prefilter the filters allow, or none."""
    options = []
    if query.levels is not None and query.levels != frozenset(LEVEL_NUMBERS):
        needles = profile.level_needles(query.levels)
        if needles:
            options.append(("level", needles))
    # Search, field and auth literals may sit on a continuation line of a text record: only for single-line formats.
    if profile.single_line:
        if query.search is not None and not query.ignore_case:
            needles = _text_needles(query.search, profile.fmt)
            if needles:
                options.append(("search", needles))
        if query.regex is not None:
            needles = _text_needles(required_literal(query.regex), profile.fmt)
            if needles:
                options.append(("regex", needles))
        for values in query.fields.values():
            needles = [_literal_needle(v, profile.fmt) for v in values]
            if needles and all(needles):
                options.append(("fields", needles))
        if query.mode == "auth":
            needle = _literal_needle(query.auth_event, profile.fmt)
            if needle:
                options.append(("auth", [needle]))
    if not options:
        return Plan(None, False, "none")
    if len(options) > 1 and sample is not None:
        buf, lo, hi = sample
        options.sort(key=lambda option: _count_hits(buf, lo, hi, option[1]))
    kind, needles = options[0]
    cheap = kind in ("level", "search", "regex") and in_place_ok(query, profile)
    return Plan(_minimal_needles(needles), cheap, kind)


IN_PLACE_GROUPS = ("none", "level", "fingerprint", "exception_type", "message")


def in_place_ok(query: Query, profile: Profile) -> bool:
    """Whether records of this file can be counted and grouped from their raw lines (flat JSON, no parsed fields needed)."""
    if profile.fmt != "json" or profile.level_prefix is None or not profile.homogeneous or query.fields or query.mode != "records":
        return False
    if profile.json_shape == "flat":
        return query.group_by in IN_PLACE_GROUPS
    return profile.json_shape == "gelf" and query.group_by in ("none", "level")


class InPlace:
    """Reads level, time, message and exception type of a flat JSON line without json.loads.

    Every value is taken only where it is certainly a top-level key: the line is one JSON
    object and no object or array opens before the key (an unescaped ``"key": "`` cannot
    occur inside a JSON string). Whatever cannot be shown that way returns None, and the
    caller parses the line in full, so the answer is the same, only slower.
    """

    def __init__(self, query: Query, profile: Profile) -> None:
        self.q = query
        self.level_prefix = profile.level_prefix
        self.prefix_len = len(profile.level_prefix)
        self.numeric = profile.numeric_level
        self.spellings = profile.spellings()
        self.need_ts = query.windowed or query.group_by != "none"
        self.need_text = query.group_by in ("fingerprint", "exception_type", "message")
        sep = re.match(rb'"[^"]*"(\s*:\s*)', profile.level_prefix).group(1).decode()
        self.message_token = f'"message"{sep}"'
        self.exception_token = f'"exception"{sep}'
        self.exception_type_token = '{"type"' + sep + '"'
        self.other_keys = re.compile(r'"(?:msg|short_message|log|exc_info|exc)"')

    def level_at(self, raw, start: int, end: int, key_at: int) -> Optional[str]:
        """The level of the line buf[start:end] whose level key is at ``key_at`` (or -1: find it)."""
        last = end - 1
        if last > start and raw[last] == 13:
            last -= 1
        if last <= start or raw[start] != 123 or raw[last] != 125:
            return None
        if key_at < 0:
            key_at = raw.find(self.level_prefix, start, end)
        if key_at <= start or raw.find(b"{", start + 1, key_at) >= 0 or raw.find(b"[", start, key_at) >= 0:
            return None
        value_at = key_at + self.prefix_len
        if self.numeric:
            stop = value_at
            while stop < end and 48 <= raw[stop] <= 57:
                stop += 1
        else:
            stop = raw.find(b'"', value_at, min(end, value_at + 24))
        if stop <= value_at:
            return None
        return self.spellings.get(bytes(raw[value_at:stop]))

    def text_of(self, line: str) -> Optional[tuple]:
        """(message, exception type) of a flat JSON line, or None."""
        at = line.find(self.message_token)
        if at < 0 or line.find("{", 1, at) >= 0 or line.find("[", 0, at) >= 0:
            return None
        try:
            message = scanstring(line, at + len(self.message_token))[0]
        except ValueError:
            return None
        if self.other_keys.search(line):
            return None  # another message or exception key the full parser might prefer
        at = line.find(self.exception_token)
        if at < 0:
            return message, None
        if line.find("{", 1, at) >= 0 or line.find("[", 0, at) >= 0:
            return None
        at += len(self.exception_token)
        if line.startswith("null", at):
            return message, None
        if not line.startswith(self.exception_type_token, at):
            return None
        try:
            return message, scanstring(line, at + len(self.exception_type_token))[0]
        except ValueError:
            return None

    def group_key(self, level: str, line: Optional[str]) -> Optional[str]:
        """The group key, or None when the line has to be parsed in full to know it."""
        group_by = self.q.group_by
        if group_by == "level":
            return level
        text = self.text_of(line)
        if text is None:
            return None
        message, exc_type = text
        if group_by == "fingerprint":
            return fingerprint_of(message, exc_type)
        if group_by == "exception_type":
            return exc_type or "(no exception)"
        return message[:200]


def _count_hits(buf, lo: int, hi: int, needles: list) -> int:
    hi = min(hi, lo + (1 << 20))
    return sum(buf[lo:hi].count(n) for n in needles)


def _match_start(match) -> int:
    return -1 if match is None else match.start()


def _candidate_lines(buf, lo: int, hi: int, plan: Plan) -> Iterator[tuple]:
    """(line start, line end, needle offset) of each line in buf[lo:hi] holding a needle, in order."""
    if plan.pattern is None:
        needle = plan.needles[0]
        pos = buf.find(needle, lo, hi)
        while pos >= 0:
            start = buf.rfind(b"\n", lo, pos) + 1 or lo
            end = buf.find(b"\n", pos, hi)
            end = hi if end < 0 else end
            yield start, end, pos
            pos = buf.find(needle, end, hi)
        return
    search = plan.pattern.search
    match = search(buf, lo, hi)
    while match is not None:
        pos = match.start()
        start = buf.rfind(b"\n", lo, pos) + 1 or lo
        end = buf.find(b"\n", pos, hi)
        end = hi if end < 0 else end
        yield start, end, pos
        match = search(buf, end, hi)


_JSON_TS_RE = re.compile(rb'"(?:timestamp|time|ts|@timestamp)"\s*:\s*("?)([^",}]+)\1')


_JSON_TS_FIRST_RE = re.compile(rb'\{\s*"(?:timestamp|time|ts|@timestamp)"\s*:\s*("?)([^",}]+)\1')


def _cheap_ts(line: bytes, query: Query) -> tuple:
    """(ok, ts) of a flat JSON line without parsing it."""
    match = _JSON_TS_FIRST_RE.match(line)  # the usual shape: the time is the first key
    if match is None:
        match = _JSON_TS_RE.search(line)
        if match is None or line[:match.start()].count(b"{") != 1:
            return False, None
    value = match.group(2).decode("ascii", "replace")
    return True, parse_timestamp(float(value) if not match.group(1) and _is_number(value) else value, query.tz)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")


class Scanner:
    """Reads one range of one file into an Aggregator."""

    def __init__(self, query: Query, profile: Profile, plan: Plan, agg: Aggregator) -> None:
        self.q = query
        self.profile = profile
        self.plan = plan
        self.agg = agg
        self.fmt = query.fmt if query.fmt != "auto" else "auto"
        self.stop_after = None if query.until is None else query.until + SLACK_SECONDS
        self.stopped = False
        self._pending: Optional[Record] = None  # a text record that may continue on the next lines
        self.in_place = InPlace(query, profile) if in_place_ok(query, profile) else None

    # The prefilter path: only lines holding a needle are looked at.
    def scan_candidates(self, buf, lo: int, hi: int) -> None:
        if self.plan.verify_in_place:
            self._scan_verified_in_place(buf, lo, hi)
            return
        q, agg = self.q, self.agg
        multiline = self.profile.fmt in MULTILINE_FORMATS
        for start, end, _pos in _candidate_lines(buf, lo, hi, self.plan):
            raw = buf[start:end]
            agg.scanned_lines += 1
            if multiline:
                record = self._parse(_decode(raw))
                if record is None or record.ts is None:
                    # A traceback line that mentions the token: its record's head did not (or was seen already).
                    continue
                if record.fmt in MULTILINE_FORMATS:
                    self._attach_continuation(record, buf, end, hi)
                if q.matches(record):
                    agg.add(record)
                continue
            self._full(raw)

    def _scan_verified_in_place(self, buf, lo: int, hi: int) -> None:
        """Candidates of a flat JSON file counted and grouped from the raw line (see ``InPlace``).

        Only the last ``limit`` matching lines of a window are copied out; lines that cannot
        be judged in place are parsed in full, in order.
        """
        q, agg, plan, reader = self.q, self.agg, self.plan, self.in_place
        levels = q.levels if q.levels is not None else frozenset(LEVEL_NUMBERS)
        needle_is_level = plan.kind == "level"
        check_text = q.search is not None or q.regex is not None
        need_ts, need_text = reader.need_ts, reader.need_text
        grouped = q.group_by != "none"
        windowed = q.windowed
        kept: collections.deque = collections.deque(maxlen=q.limit)
        by_level = agg.by_level
        find, rfind = buf.find, buf.rfind
        needle = plan.needles[0]
        search = plan.pattern.search if plan.pattern is not None else None
        scanned = matched = 0
        first_span = last_span = None
        pos = find(needle, lo, hi) if search is None else _match_start(search(buf, lo, hi))
        while pos >= 0:
            start = rfind(b"\n", lo, pos) + 1 or lo
            end = find(b"\n", pos, hi)
            if end < 0:
                end = hi
            scanned += 1
            level = reader.level_at(buf, start, end, pos if needle_is_level else -1)
            if level is None:
                self._full(bytes(buf[start:end]), kept)
            elif level in levels:
                ts = None
                raw = line = None
                if need_ts:
                    raw = bytes(buf[start:end])
                    ok, ts = _cheap_ts(raw, q)
                    if not ok:
                        self._full(raw, kept)
                        pos = find(needle, end, hi) if search is None else _match_start(search(buf, end, hi))
                        continue
                    if windowed and not q.in_window(ts):
                        level = None
                if level is not None and (check_text or need_text):
                    raw = raw or bytes(buf[start:end])
                    line = _decode(raw)
                    if check_text and not q.text_matches(line):
                        if b"\\" in raw:  # escaped text: decide on the parsed record
                            self._full(raw, kept)
                        level = None
                if level is not None:
                    key = reader.group_key(level, line) if grouped else None
                    if grouped and key is None:
                        self._full(raw or bytes(buf[start:end]), kept)
                    else:
                        matched += 1
                        by_level[level] += 1
                        if ts is not None:
                            agg.seen(ts)
                        else:
                            last_span = (start, end)
                            if first_span is None:
                                first_span = last_span
                        if grouped:
                            agg.group_raw(key, ts, buf, start, end, level)
                        kept.append((start, end, level, ts))
            pos = find(needle, end, hi) if search is None else _match_start(search(buf, end, hi))
        agg.scanned_lines += scanned
        agg.matched += matched
        if first_span is not None:
            # Times were not needed per line: the first and last matching lines give first/last seen.
            for span in (first_span, last_span):
                ok, ts = _cheap_ts(bytes(buf[span[0]:span[1]]), q)
                if ok:
                    agg.seen(ts)
        if agg.records.maxlen:
            for item in kept:
                record = item if isinstance(item, Record) else Lazy(bytes(buf[item[0]:item[1]]), item[2], item[3])
                agg.records.append((agg.path, record))

    def _in_place_line(self, raw: bytes) -> bool:
        """Count one line of a full scan in place; False when it must be parsed (then nothing was counted)."""
        q, reader = self.q, self.in_place
        level = reader.level_at(raw, 0, len(raw), -1)
        if level is None:
            return False
        ok, ts = _cheap_ts(raw, q)  # always here: cheap next to reading every line, and first/last seen need it
        if not ok:
            return False
        if self.stop_after is not None and ts is not None and ts > self.stop_after:
            self.stopped = True
            return True
        if (q.levels is not None and level not in q.levels) or not q.in_window(ts):
            return True
        line = None
        if q.search is not None or q.regex is not None or reader.need_text:
            line = _decode(raw)
        if (q.search is not None or q.regex is not None) and not q.text_matches(line):
            return b"\\" not in raw  # escaped text: let the full parse decide
        key = reader.group_key(level, line) if q.group_by != "none" else None
        if q.group_by != "none" and key is None:
            return False
        self.agg.add_raw(level, ts, key, raw)
        return True

    def _full(self, raw: bytes, kept: Optional[collections.deque] = None) -> None:
        """Parse one line and count it if it matches; into ``kept`` (in line order) when given."""
        line = _decode(raw)
        record = self._parse(line)
        if record is None:
            if line.strip():
                self.agg.unparsed(line)
            return
        if self.q.matches(record):
            self.agg.add(record, keep=kept is None)
            if kept is not None:
                kept.append(record)

    def _attach_continuation(self, record: Record, buf, pos: int, hi: int) -> None:
        count = 0
        pos += 1
        while pos < hi and count < 500:
            end = buf.find(b"\n", pos, hi)
            end = hi if end < 0 else end
            line = _decode(buf[pos:end])
            if not self._continues(record, line):
                return
            record.add_continuation(line)
            count += 1
            pos = end + 1

    def _continues(self, pending: Record, line: str) -> bool:
        """Whether ``line`` belongs to the text record before it (tracebacks); one rule for both paths."""
        if pending.fmt not in MULTILINE_FORMATS:
            return False
        record = self._parse(line)
        return record is None or (record.fmt == "text" and record.ts is None and self.fmt == "auto")

    def _parse(self, line: str) -> Optional[Record]:
        return parse_line(line, self.fmt, self.q.tz)

    # The full path: every line is parsed; text records collect their continuation lines.
    def scan_all(self, buf, lo: int, hi: int) -> None:
        agg = self.agg
        pending = self._pending
        for raw in buf[lo:hi].split(b"\n")[:-1] if buf[hi - 1:hi] == b"\n" else buf[lo:hi].split(b"\n"):
            agg.scanned_lines += 1
            if self.in_place is not None and raw[:1] == b"{":
                if pending is not None:
                    self._finish(pending)
                    pending = None
                if self.stopped:
                    break
                if self._in_place_line(raw):
                    if self.stopped:
                        break
                    continue
            line = _decode(raw)
            if not line.strip():
                continue
            record = self._parse(line)
            if record is None or (pending is not None and record.fmt == "text" and record.ts is None and self.fmt == "auto"
                                  and pending.fmt in MULTILINE_FORMATS):
                if pending is not None and pending.fmt in MULTILINE_FORMATS:
                    pending.add_continuation(line)
                else:
                    agg.unparsed(line)
                continue
            if pending is not None:
                self._finish(pending)
                if self.stopped:
                    self._pending = None
                    return
            pending = record
        self._pending = pending

    def _finish(self, record: Record) -> None:
        if self.stop_after is not None and record.ts is not None and record.ts > self.stop_after:
            self.stopped = True
            return
        if self.q.matches(record):
            self.agg.add(record)

    def flush(self) -> None:
        pending = self._pending
        self._pending = None
        if pending is not None and not self.stopped:
            self._finish(pending)

    def scan(self, buf, lo: int, hi: int) -> None:
        if self.plan.needles:
            self.scan_candidates(buf, lo, hi)
        else:
            self.scan_all(buf, lo, hi)


def _scan_plain_range(args: tuple) -> tuple:
    """Scan [start, end) of a plain file; run in-process or in a worker."""
    path, start, end, query, profile, plan, at_rest = args
    agg = Aggregator(query, path)
    stats = {"bytes_read": 0}
    scanner = Scanner(query, profile, plan, agg)
    with open(path, "rb") as handle:
        for buf, lo, hi in _plain_windows(handle.fileno(), start, end, stats, at_rest):
            scanner.scan(buf, lo, hi)
            if scanner.stopped:
                break
        scanner.flush()
    return agg, stats["bytes_read"]


def _split_points(fd: int, start: int, end: int, parts: int, profile: Profile, query: Query) -> list:
    """Part boundaries on line starts (record starts for multi-line formats)."""
    points = [start]
    step = (end - start) // parts
    for i in range(1, parts):
        pos = start + i * step
        data = os.pread(fd, 1 << 20, pos)
        newline = data.find(b"\n")
        if newline < 0:
            continue
        pos += newline + 1
        if profile.fmt in MULTILINE_FORMATS:
            ts, line_start = _first_ts_from(fd, pos, end, profile, query)
            if ts is None:
                continue
            pos = line_start
        if points[-1] < pos < end:
            points.append(pos)
    points.append(end)
    return points


_CAN_FORK = hasattr(os, "fork")


def _scan_plain(path: str, query: Query, profile: Profile, plan: Plan, start: int, end: int, at_rest: bool) -> tuple:
    threshold = PARALLEL_MIN if plan.needles else min(PARALLEL_MIN, PARALLEL_MIN_FULL)
    if query.workers > 1 and _CAN_FORK and end - start >= threshold:
        with open(path, "rb") as handle:
            points = _split_points(handle.fileno(), start, end, query.workers, profile, query)
        jobs = [(path, points[i], points[i + 1], query, profile, plan, at_rest) for i in range(len(points) - 1)]
        if len(jobs) > 1:
            results = _run_forked(jobs)
            agg, read = results[0]
            for other, other_read in results[1:]:
                agg.merge(other)
                read += other_read
            return agg, read, len(jobs)
    agg, read = _scan_plain_range((path, start, end, query, profile, plan, at_rest))
    return agg, read, 1


def _run_forked(jobs: list) -> list:
    """Scan jobs[1:] in forked children (results come back pickled through a pipe) and jobs[0] here."""
    children = []
    try:
        for job in jobs[1:]:
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns into the caller's code
                status = 0
                try:
                    os.close(read_end)
                    try:
                        payload = pickle.dumps((True, _scan_plain_range(job)), protocol=pickle.HIGHEST_PROTOCOL)
                    except Exception as exc:  # pylint: disable=broad-exception-caught
                        payload = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
                    with os.fdopen(write_end, "wb") as out:
                        out.write(payload)
                except BaseException:  # pylint: disable=broad-exception-caught
                    status = 1
                finally:
                    os._exit(status)  # pylint: disable=protected-access
            os.close(write_end)
            children.append((pid, read_end))
        results = [_scan_plain_range(jobs[0])]
        for pid, read_end in children:
            with os.fdopen(read_end, "rb") as source:
                payload = source.read()
            os.waitpid(pid, 0)
            ok, value = pickle.loads(payload) if payload else (False, "worker died")
            if not ok:
                raise RuntimeError(f"log_query worker failed: {value}")
            results.append(value)
        children = []
        return results
    finally:
        for pid, read_end in children:  # only on error (a timeout among them): do not leave children behind
            try:
                os.close(read_end)
            except OSError:
                pass
            try:
                os.kill(pid, signal.SIGKILL)  # a child stuck in a runaway regex would never exit by itself
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def scan_file(path: str, query: Query) -> tuple:
    """Scan one file; returns (Aggregator or None if skipped, file report)."""
    size = os.path.getsize(path)
    report: dict = {"path": path, "size": size, "bytes_read": 0, "bisected": False, "compressed": False,
                    "format": None, "prefilter": None, "workers": 1, "reader": None, "skipped": None}
    if size == 0:
        report["skipped"] = "empty"
        return None, report
    compressed = _is_gzip(path)
    report["compressed"] = compressed
    mtime = os.path.getmtime(path)
    if compressed and query.since is not None and mtime < query.since:
        # A rotated archive is not written after rotation: its mtime bounds its newest record.
        report["skipped"] = "modified before since"
        return None, report
    if compressed:
        with gzip.open(path, "rb") as handle:
            try:
                head = handle.read(SNIFF_BYTES)
            except (OSError, EOFError) as exc:
                raise LogQueryError("path", f"{path} is not a readable gzip file: {exc}") from None
    else:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    profile = sniff(head, query.fmt, query.tz)
    report["format"] = profile.fmt if profile.fmt != "json" else f"json ({profile.json_shape or 'flat'})"
    sample = (head, 0, len(head))
    plan = plan_for(query, profile, sample)
    report["prefilter"] = plan.describe()

    if compressed:
        report["reader"] = "gzip"
        agg = Aggregator(query, path)
        stats = {"bytes_read": 0}
        scanner = Scanner(query, profile, plan, agg)
        try:
            for buf, lo, hi in _gzip_windows(path, stats):
                scanner.scan(buf, lo, hi)
                if scanner.stopped:
                    break
            scanner.flush()
        except (OSError, EOFError) as exc:
            raise LogQueryError("path", f"{path} is not a readable gzip file: {exc}") from None
        report["bytes_read"] = stats["bytes_read"]
        return agg, report

    start, end = 0, size
    bisect_reads = 0
    if query.since is not None or query.until is not None:
        with open(path, "rb") as handle:
            fd = handle.fileno()
            if query.since is not None:
                start = bisect_offset(fd, size, query.since - SLACK_SECONDS, profile, query)
            if query.until is not None:
                end = max(start, end_offset(fd, size, query.until + SLACK_SECONDS, profile, query))
        bisect_reads = 65536 * 2 * max(1, int(math.log2(max(size, 2) / 65536 + 1)))
        report["bisected"] = True
    at_rest = time.time() - mtime >= AT_REST_SECONDS
    agg, read, workers = _scan_plain(path, query, profile, plan, start, end, at_rest)
    report["reader"] = "mmap" if at_rest else "read"
    report["bytes_read"] = read + (min(bisect_reads, size) if report["bisected"] else 0)
    report["workers"] = workers
    report["range"] = [start, end]
    return agg, report


def _next_line_start(fd: int, pos: int, size: int) -> int:
    if pos >= size or pos == 0 or os.pread(fd, 1, pos - 1) == b"\n":
        return pos
    data = os.pread(fd, 1 << 20, pos)
    newline = data.find(b"\n")
    return size if newline < 0 else pos + newline + 1


# --- results ----------------------------------------------------------------------------------

def _truncate(text: Optional[str], limit: int) -> Optional[str]:
    if text is None:
        return None
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more]"


def _record_out(path: str, item: Any, query: Query) -> dict:
    record = item
    if isinstance(item, Lazy):
        record = parse_line(_decode(item.raw), "auto", query.tz) or Record("text", _decode(item.raw), item.ts, item.level, _decode(item.raw))
    limit = query.max_message_length
    fields = {}
    for key, value in list(record.fields.items())[:30]:
        if isinstance(value, (dict, list)):
            value = _truncate(repr(value), 200)
        elif isinstance(value, str):
            value = _truncate(value, 200)
        fields[key] = value
    out = {
        "timestamp": iso(record.ts),
        "level": record.level,
        "logger": record.logger,
        "message": _truncate(record.message, limit),
        "exception": None,
        "fields": fields,
        "file": path,
    }
    if record.exc_type or record.exc_value or record.traceback:
        out["exception"] = {"type": record.exc_type, "value": _truncate(record.exc_value, limit),
                            "traceback": _truncate(record.traceback, 2000)}
    return out


def _auth_rows(table: dict, partner: str, top: int) -> list:
    rows = []
    for key, entry in sorted(table.items(), key=lambda kv: (-kv[1][0], kv[0]))[:top]:
        cv = interval_cv(entry)
        rows.append({
            "key": key,
            "count": entry[0],
            partner: len(entry[3]),
            f"{partner}_capped": len(entry[3]) >= MAX_DISTINCT,
            f"{partner}_sample": sorted(entry[3])[:10],
            "first_seen": iso(entry[1]),
            "last_seen": iso(entry[2]),
            "mean_interval_seconds": round(entry[5] / entry[4], 3) if entry[4] else None,
            "interval_cv": None if cv is None else round(cv, 3),
        })
    return rows


def _at_least(partners: set, entry: list) -> str:
    return f"{len(partners)}+" if len(entry[3]) >= MAX_DISTINCT else str(len(partners))


def auth_report(agg: Aggregator, query: Query) -> dict:
    """The FailedAuthenticationSpike view: by IP, by account, and the runbook's indicators of attack."""
    indicators = []
    for ip, entry in agg.by_ip.items():
        if ip in (OTHER, MISSING):
            continue
        accounts = entry[3] - {MISSING}
        if len(accounts) >= query.auth_accounts_per_ip:
            indicators.append({"indicator": "same_ip_many_accounts", "ip": ip, "accounts": len(accounts), "attempts": entry[0],
                               "capped": len(entry[3]) >= MAX_DISTINCT, "threshold": query.auth_accounts_per_ip,
                               "accounts_sample": sorted(accounts)[:10],
                               "detail": f"{ip} tried {_at_least(accounts, entry)} accounts ({entry[0]} failures)"})
        cv = interval_cv(entry)
        if entry[0] >= query.auth_timing_min_attempts and cv is not None and cv <= query.auth_timing_max_cv:
            mean = entry[5] / entry[4]
            indicators.append({"indicator": "machine_regular_timing", "ip": ip, "attempts": entry[0], "interval_cv": round(cv, 3),
                               "mean_interval_seconds": round(mean, 3), "threshold": query.auth_timing_max_cv,
                               "detail": f"{ip}: {entry[0]} failures every {mean:.2f}s (cv {cv:.2f})"})
    for account, entry in agg.by_account.items():
        if account in (OTHER, MISSING):
            continue
        ips = entry[3] - {MISSING}
        if len(ips) >= query.auth_ips_per_account:
            indicators.append({"indicator": "distributed_ips_same_account", "account": account, "ips": len(ips), "attempts": entry[0],
                               "capped": len(entry[3]) >= MAX_DISTINCT, "threshold": query.auth_ips_per_account,
                               "ips_sample": sorted(ips)[:10],
                               "detail": f"{account} failed from {_at_least(ips, entry)} addresses ({entry[0]} failures)"})
        # Several addresses taking turns on one account at a fixed pace: one scheduler behind a botnet. (One address
        # alone is already judged above, by IP.)
        cv = interval_cv(entry)
        if len(ips) >= 2 and entry[0] >= query.auth_timing_min_attempts and cv is not None and cv <= query.auth_timing_max_cv:
            mean = entry[5] / entry[4]
            indicators.append({"indicator": "machine_regular_timing", "account": account, "ips": len(ips), "attempts": entry[0],
                               "interval_cv": round(cv, 3), "mean_interval_seconds": round(mean, 3),
                               "threshold": query.auth_timing_max_cv,
                               "detail": f"{account}: {entry[0]} failures from {_at_least(ips, entry)} addresses "
                                         f"every {mean:.2f}s (cv {cv:.2f})"})
    indicators.sort(key=lambda i: (i["indicator"], -i["attempts"]))
    return {
        "failures": agg.matched,
        "distinct_ips": len(agg.by_ip),
        "distinct_accounts": len(agg.by_account),
        "by_ip": _auth_rows(agg.by_ip, "accounts", query.top),
        "by_account": _auth_rows(agg.by_account, "ips", query.top),
        "indicators": indicators,
        "thresholds": {"accounts_per_ip": query.auth_accounts_per_ip, "ips_per_account": query.auth_ips_per_account,
                       "timing_min_attempts": query.auth_timing_min_attempts, "timing_max_cv": query.auth_timing_max_cv},
        # Only addresses an IP-based indicator flagged: a targeted account's list also holds its owner's address.
        "blocklist_candidates": sorted({i["ip"] for i in indicators if "ip" in i}),
        "timeline": auth_timeline(agg, query.auth_timeline_buckets),
        "fields": {"ip": list(query.auth_ip_fields), "account": list(query.auth_account_fields)},
    }


def auth_timeline(agg: Aggregator, buckets: int) -> dict:
    """Failures per time bucket, first to last failure, zeros included (the runbook's "review time pattern").

    The bucket is the smallest of 1, 5, 15, 30 minutes, 1, 3, 6, 12 hours, 1 day, 1 week that gives at most
    ``buckets`` rows; ``peak`` is the busiest slot at the finest resolution counted.
    """
    slots, step = agg.auth_slots, agg.auth_step
    if not slots:
        return {"bucket_seconds": None, "buckets": [], "peak": None, "peak_seconds": step, "empty_buckets": 0}
    first, last = min(slots), max(slots)
    peak_slot, peak_count = max(slots.items(), key=lambda kv: (kv[1], -kv[0]))
    span = (last - first + 1) * step
    bucket = next((size for size in TIMELINE_STEPS if size >= step and math.ceil(span / size) <= buckets), TIMELINE_STEPS[-1])
    counts: collections.Counter = collections.Counter()
    for slot, count in slots.items():
        counts[slot * step // bucket] += count
    start, end = min(counts), max(counts)
    rows = [{"start": iso(float(index * bucket)), "failures": counts.get(index, 0)} for index in range(start, end + 1)]
    if len(rows) > buckets:  # only with the week-long bucket: keep the most recent
        rows = rows[-buckets:]
    quiet = sum(1 for row in rows if row["failures"] == 0)
    return {"bucket_seconds": bucket, "buckets": rows, "peak": {"start": iso(float(peak_slot * step)), "failures": peak_count},
            "peak_seconds": step, "empty_buckets": quiet}


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise LogQueryError('timeout') when the block runs longer than SECONDS (0: no limit).

    A regex with nested repetition (``(a+)+$``) can take exponential time on one line; Python's regex engine checks
    for signals while it matches, so an interval timer stops it. Only the main thread can receive the signal."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):  # pylint: disable=unused-argument
        raise LogQueryError("timeout", f"the query did not finish within {seconds:g} s; a regex with nested repetition "
                                       "(such as (a+)+) can take exponential time: simplify regex, or narrow path or since")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_query(params: dict) -> dict:
    """Run one query within its ``timeout``. Raises LogQueryError for bad input and for a query out of time."""
    timeout = params.get("timeout")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= MAX_TIMEOUT:
        raise LogQueryError("timeout", f"seconds between 0 (no limit) and {MAX_TIMEOUT}, got {timeout!r}")
    with time_limit(timeout):
        return _run_query(params)


def _run_query(params: dict) -> dict:
    started = time.perf_counter()
    query = Query(params)
    paths = resolve_files(query)
    total = Aggregator(query, "")
    files = []
    for path in paths:
        agg, report = scan_file(path, query)
        files.append(report)
        if agg is not None:
            total.merge(agg)

    groups = []
    if query.group_by != "none":
        ordered = sorted(total.groups.items(), key=lambda kv: (-kv[1][0], kv[0]))
        for key, (count, first, last, samples) in ordered[: query.top]:
            groups.append({"key": key, "count": count, "first_seen": iso(first), "last_seen": iso(last),
                           "sample": samples[0] if samples else None, "samples": samples})
    result = {
        "matched": total.matched,
        "scanned_lines": total.scanned_lines,
        "unparsed_lines": total.unparsed_lines,
        "unparsed_samples": total.unparsed_samples,
        "files": files,
        "window": {"since": iso(query.since), "until": iso(query.until)},
        "first_seen": iso(total.first_ts),
        "last_seen": iso(total.last_ts),
        "group_by": query.group_by,
        "group_count": len(total.groups),
        "groups": groups,
        "records": [_record_out(p, r, query) for p, r in total.records],
        "by_level": dict(sorted(total.by_level.items(), key=lambda kv: -LEVEL_NUMBERS.get(kv[0], 0))),
    }
    if query.mode == "auth":
        result["auth"] = auth_report(total, query)
    result["elapsed_seconds"] = round(time.perf_counter() - started, 4)
    result["summary"] = summary_line(result, query)
    return result


def summary_line(result: dict, query: Query) -> str:
    parts = [f"{result['matched']} matching record{'s' if result['matched'] != 1 else ''}"]
    read = sum(f["bytes_read"] for f in result["files"])
    parts.append(f"in {len([f for f in result['files'] if not f['skipped']])} file(s), {read / 1048576:.1f} MiB read")
    if query.windowed:
        parts.append(f"between {result['window']['since'] or 'the start'} and {result['window']['until'] or 'now'}")
    text = " ".join(parts)
    if result["by_level"]:
        text += " (" + ", ".join(f"{k} {v}" for k, v in result["by_level"].items()) + ")"
    if query.mode == "auth":
        auth = result["auth"]
        kinds = collections.Counter(i["indicator"] for i in auth["indicators"])
        text += f"; {auth['distinct_ips']} IPs, {auth['distinct_accounts']} accounts"
        text += "; indicators: " + (", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())) if kinds else "none")
        peak = auth["timeline"]["peak"]
        if peak:
            slot = "minute" if auth["timeline"]["peak_seconds"] == 60 else f"{auth['timeline']['peak_seconds'] // 60} minutes"
            text += f"; peak {peak['failures']} in the {slot} from {peak['start'][:16].replace('T', ' ')} UTC"
    elif result["groups"]:
        top = result["groups"][0]
        text += f"; top {query.group_by}: {top['key'][:120]} ({top['count']})"
    if result["unparsed_lines"]:
        text += f"; {result['unparsed_lines']} unparsable line(s) skipped"
    return text
