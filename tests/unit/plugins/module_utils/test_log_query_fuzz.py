"""Property checks (hypothesis) of log_query's parsers, its options and the ML prediction-log readers.

* Any option value gives a Query or a LogQueryError naming the option, never another exception; a Query runs.
* parse(format(record)) gives the record back, for every format the parsers read (the formatters are written here,
  as the loggers of the two systems write: Loguru serialize=True and text, python logging, logfmt, GELF, flat JSON).
* Totals are conserved: the lines scanned are the lines written, matched = the records the filters accept (counted
  here independently), by_level and the groups add up to matched, whatever the workers, window or filters.
* The prediction log reader and the access-log summary: entries + unreadable + too old = the lines; no exception.
* Same input, same output (group order, samples, counts).

Budget: derandomized (the same examples on every run, as CI needs) and a few hundred examples in all, about 5 s.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from ansible_collections.sre.runbooks.plugins.module_utils import _log_formats as lf
from ansible_collections.sre.runbooks.plugins.module_utils._log_query import LogQueryError, Query, resolve_time, run_query
from ansible_collections.sre.runbooks.plugins.module_utils._model_check import ModelCheckError, access_summary, read_predictions

UTC = timezone.utc
BASE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
NOW = (BASE + timedelta(days=2)).timestamp()
# HYPOTHESIS_NO_SHRINK=1: report a failure at once (shrinking one can take minutes on a loaded machine)
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                phases=(Phase.explicit, Phase.generate) if os.environ.get("HYPOTHESIS_NO_SHRINK") else tuple(Phase),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
LOGURU_NO = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
SYSLOG = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
# One line of message: any character but line breaks (the scanners split on \n; str.splitlines on more).
message_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                       max_size=60)
logger_name = st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,8}){0,2}", fullmatch=True)
instant = st.integers(0, 2 * 86400 * 1000 - 1).map(lambda ms: BASE + timedelta(milliseconds=ms))


def stamp_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


# -- formatters: a record as each logger writes it ----------------------------------------------------------------

def as_flat_json(ts, level, message, logger):
    return json.dumps({"timestamp": ts.isoformat(timespec="milliseconds"), "level": level, "message": message, "logger": logger,
                       "request_id": "r-1"})


def as_loguru_serialized(ts, level, message, logger):
    text = f"{stamp_ms(ts)} | {level:<8} | {logger}:handler:42 - {message}\n"
    return json.dumps({"text": text, "record": {
        "elapsed": {"repr": "0:00:01", "seconds": 1.0}, "exception": None, "extra": {"request_id": "r-1"},
        "file": {"name": "routes.py", "path": "/app/routes.py"}, "function": "handler",
        "level": {"icon": "", "name": level, "no": LOGURU_NO[level]},
        "line": 42, "message": message, "module": "routes", "name": logger, "process": {"id": 7, "name": "MainProcess"},
        "thread": {"id": 9, "name": "MainThread"}, "time": {"repr": ts.isoformat(), "timestamp": ts.timestamp()}}})


def as_gelf(ts, level, message, logger):
    return json.dumps({"version": "1.1", "host": "app1", "short_message": message, "timestamp": ts.timestamp(),
                       "level": SYSLOG.get(level, 6), "_logger_name": logger, "_request_id": "r-1"})


def as_loguru_text(ts, level, message, logger):
    return f"{stamp_ms(ts)} | {level:<8} | {logger}:handler:42 - {message}"


def as_python_logging(ts, level, message, logger):
    return f"{ts.strftime('%Y-%m-%d %H:%M:%S')},{ts.microsecond // 1000:03d} - {logger} - {level} - {message}"


def as_logfmt(ts, level, message, logger):
    quoted = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'time={ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")} level={level.lower()} msg="{quoted}" logger={logger}'


FORMATTERS = {"json": as_flat_json, "json_loguru": as_loguru_serialized, "json_gelf": as_gelf, "loguru_text": as_loguru_text,
              "python_logging": as_python_logging, "logfmt": as_logfmt}


def expected_level(kind: str, level: str) -> str:
    if kind == "json_gelf":
        return {7: "DEBUG", 6: "INFO", 4: "WARNING", 3: "ERROR", 2: "CRITICAL"}[SYSLOG.get(level, 6)]
    return level


@FUZZ
@given(kind=st.sampled_from(sorted(FORMATTERS)), ts=instant, level=st.sampled_from(LEVELS), message=message_text, logger=logger_name,
       explicit=st.booleans())
def test_parse_of_format_round_trips(kind, ts, level, message, logger, explicit):
    line = FORMATTERS[kind](ts, level, message, logger)
    fmt = ("json" if kind.startswith("json") else kind) if explicit else "auto"
    record = lf.parse_line(line, fmt)
    assert record is not None, line
    assert record.fmt == ("json" if kind.startswith("json") else kind)
    assert record.ts == pytest.approx(ts.timestamp(), abs=1e-3)
    assert record.level == expected_level(kind, level)
    assert record.message == message
    assert record.logger == logger
    if kind in ("json", "json_loguru", "json_gelf"):
        assert record.get("request_id") == "r-1"


@FUZZ
@given(ts=instant, level=st.sampled_from(LEVELS), message=message_text.filter(lambda m: not m[:1].isspace() and m[:1] not in ":|-]"))
def test_text_format_round_trips(ts, level, message):
    record = lf.parse_line(f"{ts.isoformat(timespec='milliseconds')} {level} {message}", "text")
    assert (record.ts, record.level, record.message) == (pytest.approx(ts.timestamp(), abs=1e-3), level, message)


# -- options ---------------------------------------------------------------------------------------------------------

durations = st.builds(lambda last, n, unit, ago: f"{'last ' if last else ''}{n}{unit}{' ago' if ago else ''}", st.booleans(),
                      st.one_of(st.integers(0, 10 ** 6), st.integers(10 ** 6, 10 ** 400), st.floats(0, 1e6).map(lambda f: f"{f:.3f}")),
                      st.sampled_from(["s", "m", "h", "d", "w", " minutes", " hours", "x", ""]), st.booleans())
times = st.one_of(st.none(), durations, message_text, st.just("now"), instant.map(datetime.isoformat),
                  st.integers(-10 ** 20, 10 ** 20), st.floats(allow_nan=True, allow_infinity=True),
                  st.from_regex(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?(Z|[+-]\d\d:?\d\d)?", fullmatch=True))
injections = st.sampled_from(["'; DROP TABLE users; --", "$(rm -rf /)", "`id`", "| sh", '{job="x"} or vector(1)', ".*", "(a+)+$",
                              "[", "\\", "\x00", "%s%s%n", "../../etc/passwd", "a" * 5000])
free_text = st.one_of(st.none(), message_text, injections)


@FUZZ
@given(since=times, until=times,
       tz=st.one_of(st.none(), st.sampled_from(["UTC", "local", "+02:00", "America/New_York", "Nowhere/Land", "../../etc", "\x00", "a" * 300]),
                    message_text),
       level=free_text, search=free_text, regex=free_text, group_by=free_text, fields=st.dictionaries(message_text, free_text, max_size=2),
       numbers=st.dictionaries(st.sampled_from(["top", "samples", "limit", "max_groups", "max_message_length", "workers"]),
                               st.one_of(st.integers(-5, 10 ** 6), message_text), max_size=3))
def test_any_option_is_a_query_or_a_clear_error(tmp_path_factory, since, until, tz, level, search, regex, group_by, fields, numbers):
    path = tmp_path_factory.mktemp("logs") / "app.log"
    path.write_text("".join(as_flat_json(BASE + timedelta(minutes=i), LEVELS[i % 7], f"event {i}", "app") + "\n" for i in range(20)))
    params = {"path": str(path), "since": since, "until": until, "default_timezone": tz, "level": level, "search": search, "regex": regex,
              "group_by": group_by, "fields": fields, "now": NOW, "workers": 1, **numbers}
    try:
        Query(params)
    except LogQueryError as exc:
        assert exc.option in params and str(exc).startswith(f"{exc.option}: ")
        return
    if isinstance(params.get("workers"), int) and params["workers"] > 2:
        params["workers"] = 1  # forks are not what is fuzzed here
    result = run_query(params)
    assert result["matched"] <= result["scanned_lines"] <= 20
    json.dumps(result)  # the module returns it as JSON


@FUZZ
@given(value=times)
def test_resolve_time_gives_a_time_a_datetime_can_show_or_a_clear_error(value):
    try:
        ts = resolve_time("since", value, NOW, UTC)
    except LogQueryError as exc:
        assert exc.option == "since"
        return
    assert ts is None or lf.iso(ts)  # shown in the result's window: must be a real date


# -- totals -----------------------------------------------------------------------------------------------------------

MESSAGES = ["db down", "timeout x=1", "ok", "slow query", "auth_failure ip=1.2.3.4"]
entries = st.lists(st.tuples(st.integers(0, 2 * 86400 - 1), st.sampled_from(LEVELS), st.sampled_from(MESSAGES)), min_size=1, max_size=60)


@FUZZ
@given(rows=entries, kind=st.sampled_from(sorted(FORMATTERS)), level=st.one_of(st.none(), st.sampled_from(LEVELS)),
       search=st.one_of(st.none(), st.sampled_from(["db", "x=1", "o", "zzz"])), window=st.one_of(st.none(), st.tuples(
           st.integers(0, 2 * 86400), st.integers(0, 2 * 86400))), garbage=st.integers(0, 3), workers=st.sampled_from([1, 1, 1, 2]))
def test_totals_are_conserved(tmp_path_factory, rows, kind, level, search, window, garbage, workers):
    rows = sorted(rows)  # a log is in time order (the window search bisects on it)
    lines = [FORMATTERS[kind](BASE + timedelta(seconds=s), lvl, msg, "app.api") for s, lvl, msg in rows]
    junk = [json.dumps(["not", "a", "record"])] * garbage if kind.startswith("json") else []
    path = tmp_path_factory.mktemp("logs") / "app.log"
    path.write_text("\n".join(junk + lines) + "\n")
    params = {"path": str(path), "level": level, "search": search, "now": NOW, "workers": workers, "top": 1000, "limit": 0,
              "group_by": "level"}
    since = until = None
    if window:
        lo, hi = sorted(window)
        since, until = BASE + timedelta(seconds=lo), BASE + timedelta(seconds=hi)
        params.update(since=since.isoformat(), until=until.isoformat())
    minimum = None if level is None else lf.LEVEL_NUMBERS[level]
    # search is matched against the line as written (for JSON also the decoded message)
    expected = [(s, lvl) for (s, lvl, msg), line in zip(rows, lines)
                if (minimum is None or lf.LEVEL_NUMBERS[expected_level(kind, lvl)] >= minimum)
                and (search is None or search in line or search in msg)
                and (since is None or since <= BASE + timedelta(seconds=s) <= until)]
    result = run_query(params)
    assert result["matched"] == len(expected), (result["summary"], result["files"])
    assert sum(result["by_level"].values()) == result["matched"]
    assert sum(g["count"] for g in result["groups"]) == result["matched"]
    assert result["group_count"] == len(result["groups"]) == len(result["by_level"])
    again = run_query(params)
    for key in ("matched", "by_level", "groups", "group_count", "first_seen", "last_seen", "scanned_lines"):
        assert again[key] == result[key]  # deterministic


# -- the ML prediction log and the API access log ------------------------------------------------------------------------

prediction = st.fixed_dictionaries({"timestamp": st.one_of(instant.map(datetime.isoformat), instant.map(lambda t: t.isoformat().replace("+00:00", "Z")),
                                                           st.integers(), st.none(), message_text, st.lists(st.integers(), max_size=2)),
                                    "prediction": st.sampled_from([0, 1]), "probability": st.floats(0, 1)})
prediction_line = st.one_of(prediction.map(json.dumps), message_text, st.just("[" * 5000), st.just("{}"), st.just("[]"), st.just("null"))


@settings(FUZZ, max_examples=25)
@given(lines=st.lists(prediction_line, max_size=30), since_hours=st.floats(0, 72))
def test_prediction_log_reader_accounts_for_every_line(tmp_path_factory, lines, since_hours):
    path = tmp_path_factory.mktemp("ml") / "predictions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    read = read_predictions(str(path), since_hours * 3600, now=NOW)
    counted = [line for line in lines if line.strip()]
    old = 0
    for line in counted:
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        stamp = entry.get("timestamp") if isinstance(entry, dict) else None
        if isinstance(stamp, str):
            try:
                moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                continue
            if (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).timestamp() < NOW - since_hours * 3600:
                old += 1
    assert len(read["entries"]) + read["unreadable"] + old == len(counted)
    assert read == read_predictions(str(path), since_hours * 3600, now=NOW)


def test_prediction_log_reader_names_a_missing_file(tmp_path):
    with pytest.raises(ModelCheckError, match="predictions_log"):
        read_predictions(str(tmp_path / "missing.jsonl"), 60)


access_line = st.one_of(
    st.builds(lambda ts, path, status, ms: f"{ts} - heart_disease.api - INFO - request method=POST path={path} status={status} duration_ms={ms}",
              st.one_of(instant.map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S,") + "123"),
                        st.from_regex(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", fullmatch=True)),
              st.sampled_from(["/predict", "/predict/batch", "/health"]), st.integers(100, 999),
              st.from_regex(r"\d{1,4}(\.\d{1,3})?", fullmatch=True)),
    message_text)


@settings(FUZZ, max_examples=25)
@given(lines=st.lists(access_line, max_size=30))
def test_access_summary_never_raises_and_adds_up(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("ml") / "api.log"
    path.write_text("\n".join(lines) + "\n")
    summary = access_summary(str(path), 3 * 86400, now=NOW)
    assert summary["available"]
    assert summary["server_errors"] + summary["client_errors"] <= summary["requests"] <= len(lines)
    assert 0 <= summary["error_rate"] <= 1
    assert summary == access_summary(str(path), 3 * 86400, now=NOW)
