"""Parsers, levels, timestamps and fingerprints of log_query (sre.runbooks._log_formats)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.sre.runbooks.plugins.module_utils import _log_formats as lf

UTC = timezone.utc


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize("raw, expected", [
    ("ERROR", "ERROR"), ("error", "ERROR"), ("Err", "ERROR"), ("WARN", "WARNING"), ("warning", "WARNING"),
    ("FATAL", "CRITICAL"), ("crit", "CRITICAL"), ("emerg", "CRITICAL"), ("notice", "INFO"), ("SUCCESS", "SUCCESS"),
    ("trace", "TRACE"), (3, "ERROR"), (4, "WARNING"), (6, "INFO"), (7, "DEBUG"), (0, "CRITICAL"), ("3", "ERROR"),
    (40, "ERROR"), (50, "CRITICAL"), (30, "WARNING"), (20, "INFO"), (10, "DEBUG"), ("nonsense", None), (None, None), (True, None),
])
def test_normalise_level(raw, expected):
    assert lf.normalise_level(raw) == expected


def test_aliases_cover_every_spelling_of_wanted_levels():
    assert set(lf.aliases_of(["CRITICAL"])) == {"CRIT", "CRITICAL", "FATAL", "ALERT", "EMERG", "EMERGENCY"}
    assert "WARN" in lf.aliases_of(["WARNING"])


@pytest.mark.parametrize("text, expected", [
    ("2026-11-23T09:14:03.123456+00:00", "2026-11-23T09:14:03.123456+00:00"),
    ("2026-11-23T09:14:03Z", "2026-11-23T09:14:03+00:00"),
    ("2026-11-23 09:14:03,123", "2026-11-23T09:14:03.123+00:00"),
    ("2026-11-23T10:14:03+01:00", "2026-11-23T09:14:03+00:00"),
])
def test_parse_timestamp_iso_forms(text, expected):
    assert lf.parse_timestamp(text) == pytest.approx(epoch(expected))


def test_naive_timestamp_takes_default_timezone():
    plus_two = lf.tz_from_name("+02:00")
    assert lf.parse_timestamp("2026-11-23 11:14:03", plus_two) == pytest.approx(epoch("2026-11-23T09:14:03+00:00"))
    assert lf.parse_timestamp("2026-11-23 09:14:03", lf.tz_from_name("Europe/Berlin")) == pytest.approx(epoch("2026-11-23T08:14:03+00:00"))


def test_fallback_parser_handles_odd_fraction_lengths():
    assert lf._parse_iso_fallback("2026-11-23T09:14:03.1234567Z") == datetime(2026, 11, 23, 9, 14, 3, 123456, tzinfo=UTC)
    assert lf._parse_iso_fallback("not a time") is None


def test_epoch_numbers_and_milliseconds():
    assert lf.parse_timestamp(1700000000.5) == 1700000000.5
    assert lf.parse_timestamp(1700000000500) == pytest.approx(1700000000.5)
    assert lf.parse_timestamp("garbage") is None


def test_bad_timezone_name():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        lf.tz_from_name("Mars/Olympus")


FLAT = {
    "timestamp": "2026-11-23T09:14:03.123456+00:00", "level": "ERROR", "logger": "app.api.routes", "message": "Query failed",
    "module": "routes", "function": "get_schedule", "line": 42,
    "exception": {"type": "OperationalError", "value": "timeout expired", "traceback": "Traceback (most recent call last):\n..."},
    "process": 123, "thread": 456, "endpoint": "/api/v1/schedules", "ip": "10.0.0.5",
}


def test_flat_json_record():
    record = lf.parse_line(json.dumps(FLAT))
    assert record.fmt == "json"
    assert record.ts == pytest.approx(epoch("2026-11-23T09:14:03.123456+00:00"))
    assert (record.level, record.logger, record.message) == ("ERROR", "app.api.routes", "Query failed")
    assert (record.exc_type, record.exc_value) == ("OperationalError", "timeout expired")
    assert record.traceback.startswith("Traceback")
    assert record.get("endpoint") == "/api/v1/schedules"
    assert record.get("line") == 42
    assert "level" not in record.fields and "message" not in record.fields


def test_flat_json_null_exception():
    record = lf.parse_line(json.dumps(dict(FLAT, exception=None, level="WARN")))
    assert record.exc_type is None and record.level == "WARNING"


def test_loguru_serialized_record():
    line = json.dumps({
        "text": "2026-11-23 09:14:03.123 | ERROR | app.db:connect:7 - boom\nTraceback (most recent call last):\nValueError: boom\n",
        "record": {
            "time": {"repr": "2026-11-23 09:14:03.123000+00:00", "timestamp": 1795425243.123},
            "level": {"icon": "x", "name": "ERROR", "no": 40}, "message": "boom", "name": "app.db", "module": "db",
            "function": "connect", "line": 7, "exception": {"type": "ValueError", "value": "boom", "traceback": True},
            "extra": {"ip": "203.0.113.7", "event": "auth_failure"}, "process": {"id": 11, "name": "MainProcess"},
            "thread": {"id": 22, "name": "MainThread"}, "file": {"name": "db.py", "path": "/app/db.py"},
        },
    })
    record = lf.parse_line(line)
    assert record.level == "ERROR" and record.ts == pytest.approx(1795425243.123)
    assert (record.message, record.logger, record.exc_type) == ("boom", "app.db", "ValueError")
    assert record.get("ip") == "203.0.113.7" and record.get("process") == 11 and record.get("file") == "db.py"
    assert record.traceback.startswith("Traceback")


def test_gelf_record():
    line = json.dumps({"version": "1.1", "host": "api-1", "short_message": "db down", "full_message":
                       "Traceback (most recent call last):\n  File x\npsycopg.OperationalError: db down",
                       "timestamp": 1795425243.5, "level": 3, "_logger_name": "app.db", "_endpoint": "/x", "_ip": "10.1.1.1"})
    record = lf.parse_line(line)
    assert (record.level, record.message, record.logger) == ("ERROR", "db down", "app.db")
    assert record.ts == 1795425243.5
    assert record.get("endpoint") == "/x" and record.get("host") == "api-1"
    assert record.exc_type == "psycopg.OperationalError"


def test_loguru_text_head_and_traceback_continuation():
    record = lf.parse_line("2026-11-23 09:14:03.123 | ERROR    | app.api.routes:get_schedule:42 - Query failed for id=7")
    assert record.fmt == "loguru_text"
    assert (record.level, record.logger, record.message) == ("ERROR", "app.api.routes", "Query failed for id=7")
    assert record.get("function") == "get_schedule" and record.get("line") == 42 and record.get("id") == "7"
    for line in ("Traceback (most recent call last):", '  File "/app/x.py", line 3, in f', "sqlalchemy.exc.OperationalError: connection refused"):
        record.add_continuation(line)
    assert record.exc_type == "sqlalchemy.exc.OperationalError" and record.exc_value == "connection refused"
    assert record.raw.count("\n") == 3


def test_python_logging_line_with_kv():
    record = lf.parse_line("2026-11-23 09:14:03,123 - api.auth - WARNING - auth_failure ip=10.0.0.5 account=bob")
    assert record.fmt == "python_logging"
    assert (record.level, record.logger) == ("WARNING", "api.auth")
    assert record.ts == pytest.approx(epoch("2026-11-23T09:14:03.123+00:00"))
    assert record.get("ip") == "10.0.0.5" and record.get("account") == "bob"


def test_logfmt_line():
    record = lf.parse_line('time=2026-11-23T09:14:03Z level=error msg="auth_failure for \\"alice\\"" ip=203.0.113.7 account=alice')
    assert record.fmt == "logfmt"
    assert record.level == "ERROR" and record.ts == pytest.approx(epoch("2026-11-23T09:14:03+00:00"))
    assert record.message == 'auth_failure for "alice"'
    assert record.get("ip") == "203.0.113.7" and record.get("account") == "alice"


def test_plain_text_kv_line_and_garbage():
    record = lf.parse_line("auth_failure ip=198.51.100.4 account=carol")
    assert record is not None and record.fmt == "text" and record.get("ip") == "198.51.100.4"
    assert lf.parse_line("just some words") is None
    assert lf.parse_line("just some words", "text").message == "just some words"
    assert lf.parse_line("{not json") is None
    assert lf.parse_line("[1, 2]") is None


def test_forced_format_rejects_other_formats():
    assert lf.parse_line(json.dumps(FLAT), "logfmt") is None
    assert lf.parse_line("2026-11-23 09:14:03,123 - a - INFO - x", "json") is None
    assert lf.parse_line("2026-11-23 09:14:03,123 - a - INFO - x", "loguru_text") is None


def test_kv_extraction_stops_at_quotes_like_the_runbook_grep():
    assert lf.extract_kv('login failed ip=203.0.113.9" account="dave smith"') == {"ip": "203.0.113.9", "account": "dave smith"}


def test_fingerprint_groups_same_error_with_different_ids():
    first = lf.parse_line(json.dumps(dict(FLAT, message="Could not save assignment 0b6f7d9e-1c1e-4f7e-9a57-2f1c1a9b0d11: id 17 at 10.0.0.3")))
    second = lf.parse_line(json.dumps(dict(FLAT, message="Could not save assignment 7e1d2c3b-aaaa-4bbb-8ccc-0123456789ab: id 923 at 10.0.0.99")))
    other_type = lf.parse_line(json.dumps(dict(FLAT, message=second.message, exception={"type": "IntegrityError", "value": "x"})))
    assert lf.fingerprint(first) == lf.fingerprint(second)
    assert lf.fingerprint(first) != lf.fingerprint(other_type)
    assert "<uuid>" in lf.fingerprint(first) and "<ip>" in lf.fingerprint(first)


def test_normalise_message_replaces_hex_and_quoted_values():
    assert lf.normalise_message("object at 0x7f3a2b1c failed for 'alice' hash deadbeef12") == "object at <hex> failed for <str> hash <hex>"
    assert lf.normalise_message('key "a b" 12.5s') == "key <str> <n>s"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=300), st.sampled_from(("auto",) + lf.FORMATS))
def test_parsers_never_raise_on_arbitrary_text(text, fmt):
    record = lf.parse_line(text, fmt)
    assert record is None or isinstance(record, lf.Record)
    if record is not None:
        lf.fingerprint(record)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_parsers_never_raise_on_arbitrary_bytes(data):
    line = data.decode("utf-8", "replace")
    for fmt in ("auto",) + lf.FORMATS:
        record = lf.parse_line(line, fmt)
        assert record is None or isinstance(record, lf.Record)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["timestamp", "level", "message", "exception", "time", "record", "short_message"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=20), st.floats(allow_nan=False), st.dictionaries(
                           st.text(max_size=5), st.one_of(st.none(), st.text(max_size=5), st.integers()), max_size=3))))
def test_json_parser_survives_odd_shapes(obj):
    record = lf.parse_line(json.dumps(obj))
    assert record is None or isinstance(record, lf.Record)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.text(alphabet="0123456789abcdefxyzABCDEF.:-_ '\"`x/()=,", max_size=80), st.text(alphabet="123456789", min_size=1, max_size=1))
def test_normalise_memo_is_exact(text, digit):
    """The memo key maps digits 2-9 to 1: any message equal under that mapping must normalise the same."""
    lf._NORMALISED.clear()  # pylint: disable=protected-access
    other = "".join(digit if ch in "123456789" else ch for ch in text)
    assert lf.normalise_message(other) == lf._normalise(other[:300])  # pylint: disable=protected-access
    assert lf.normalise_message(text) == lf._normalise(text[:300])  # pylint: disable=protected-access
