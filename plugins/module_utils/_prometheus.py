# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus HTTP API queries: instant, range, active alerts and rules."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from typing import Any

from ansible_collections.sre.runbooks.plugins.module_utils._http import JsonHttpClient, ServiceError, ServiceUnreachable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PromQLError(ValueError):
    """Prometheus rejected the query (syntax or evaluation error)."""


def parse_duration(text: str, option: str) -> float:
    """``'5m'`` → 300.0.  Raise ValueError naming ``option`` for anything else."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{option}: expected a duration such as 30s, 5m, 1h or 2d, got {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def resolve_time(value: Any, option: str, now: float | None = None) -> float:
    """Turn ``now``, a relative age (``15m`` = 15 minutes ago), an ISO 8601 time or a unix time into unix seconds."""
    now = time.time() if now is None else now
    if value is None or value == "now":
        return now
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if _DURATION.match(text):
        return now - parse_duration(text, option)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{option}: expected 'now', an age such as 15m, an ISO 8601 time or a unix time, got {text!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{option}: {text!r} has no timezone; add one (e.g. Z or +00:00)")
    return parsed.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _number(raw: str) -> float | None:
    """Prometheus sends sample values as strings, NaN/Inf included; JSON can't hold those, so they become None."""
    value = float(raw)
    return None if math.isnan(value) or math.isinf(value) else value


class PrometheusClient:
    """The parts of the Prometheus HTTP API the runbooks use."""

    def __init__(self, http: JsonHttpClient):
        self.http = http

    def _api(self, path: str, params: dict[str, Any] | None = None, method: str = "GET") -> Any:
        status, body = self.http.request(method, path, params=params)
        if isinstance(body, dict) and body.get("status") == "error":
            if body.get("errorType") in ("bad_data", "execution"):
                raise PromQLError(body.get("error", "unknown error"))
            raise ServiceError(f"Prometheus error {body.get('errorType')}: {body.get('error')}", status, body)
        if status >= 400 or not isinstance(body, dict):
            raise ServiceError(f"Prometheus answered HTTP {status} for {path}", status, body)
        return body.get("data")

    def instant(self, query: str, at: float | None = None) -> dict[str, Any]:
        data = self._api("/api/v1/query", {"query": query, "time": at}, method="POST")
        return _normalise_result(data)

    def range(self, query: str, start: float, end: float, step: float) -> dict[str, Any]:
        if end <= start:
            raise ValueError("start: must be before end")
        if (end - start) / step > 11000:
            raise ValueError(f"step: {step:g}s gives more than 11000 points over the range; use a larger step")
        data = self._api("/api/v1/query_range", {"query": query, "start": start, "end": end, "step": step}, method="POST")
        return _normalise_result(data)

    def alerts(self) -> list[dict[str, Any]]:
        data = self._api("/api/v1/alerts")
        return list(data.get("alerts", [])) if isinstance(data, dict) else []


def _normalise_result(data: dict[str, Any]) -> dict[str, Any]:
    """Flatten Prometheus' result into series with float values and ISO timestamps."""
    result_type = data.get("resultType")
    result = data.get("result")
    series: list[dict[str, Any]] = []
    if result_type in ("scalar", "string"):
        ts, raw = result
        value = _number(raw) if result_type == "scalar" else raw
        series.append({"metric": {}, "value": value, "timestamp": _iso(ts)})
    elif result_type == "vector":
        for item in result:
            ts, raw = item["value"]
            series.append({"metric": item.get("metric", {}), "value": _number(raw), "timestamp": _iso(ts)})
    elif result_type == "matrix":
        for item in result:
            points = [[_iso(ts), _number(raw)] for ts, raw in item.get("values", [])]
            numbers = [value for _ts, value in points if value is not None]
            series.append({
                "metric": item.get("metric", {}),
                "values": points,
                "last": numbers[-1] if numbers else None,
                "min": min(numbers) if numbers else None,
                "max": max(numbers) if numbers else None,
            })
    return {"result_type": result_type, "series": series}


def index_by_label(series: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """{label value: value (instant) or last value (range)} — the shape playbooks want for thresholds."""
    indexed: dict[str, Any] = {}
    for item in series:
        key = item["metric"].get(label, "")
        indexed[key] = item.get("value", item.get("last"))
    return indexed


def prometheus_argument_spec() -> dict[str, Any]:
    """The options of the ``sre.runbooks.prometheus`` doc fragment, for ``argument_spec``."""
    return {
        "url": {"type": "str", "default": "http://127.0.0.1:9090", "aliases": ["prometheus_url"]},
        "timeout": {"type": "float", "default": 10},
        "validate_certs": {"type": "bool", "default": True},
        "bearer_token": {"type": "str", "no_log": True},
        "allow_unreachable": {"type": "bool", "default": False},
    }


def client_from_params(params: dict[str, Any]) -> PrometheusClient:
    """Build a client from the module's parameters (raises ValueError naming a bad option)."""
    if params["timeout"] <= 0:
        raise ValueError(f"timeout: must be greater than 0, got {params['timeout']}")
    http = JsonHttpClient(params["url"], timeout=params["timeout"], validate_certs=params["validate_certs"],
                          bearer_token=params.get("bearer_token"), option_name="url")
    return PrometheusClient(http)


def watch(client: PrometheusClient, query: str, threshold: float, healthy_when: str = "below",
          recover_within: float = 1800, hold_for: float = 900, interval: float = 30,
          sleep=time.sleep, clock=time.monotonic) -> dict[str, Any]:
    """Poll ``query`` until it is healthy, then check it stays healthy for ``hold_for`` seconds.

    The value judged is the worst series (max when healthy means below, min when above); no
    series at all counts as healthy (no errors, nothing to rate), an unreachable server does not.
    Outcomes: ``recovered`` (healthy and held), ``not_recovered`` (never healthy in time),
    ``recurred`` (healthy, then unhealthy again within the hold), ``unreachable``.
    """
    if interval <= 0:
        raise ValueError("interval: must be greater than 0")
    samples: list[list[Any]] = []

    def sample() -> tuple[bool | None, float | None]:
        try:
            result = client.instant(query)
        except ServiceUnreachable:  # pragma: no cover - exercised in integration tests
            samples.append([_iso(time.time()), None])
            return None, None
        values = [s["value"] for s in result["series"] if s.get("value") is not None]
        worst = (max(values) if healthy_when == "below" else min(values)) if values else None
        samples.append([_iso(time.time()), worst])
        if worst is None:
            return True, None
        return (worst <= threshold if healthy_when == "below" else worst >= threshold), worst

    start = clock()
    recovered_at = None
    outcome = "not_recovered"
    last = None
    unreachable_streak = 0
    while True:
        healthy, last = sample()
        unreachable_streak = unreachable_streak + 1 if healthy is None else 0
        if healthy:
            recovered_at = _iso(time.time())
            break
        if clock() - start + interval > recover_within:
            outcome = "unreachable" if unreachable_streak and unreachable_streak == len(samples) else "not_recovered"
            return {"outcome": outcome, "recovered": False, "recovered_at": None, "recurred_at": None,
                    "last_value": last, "samples": samples[-200:]}
        sleep(interval)
    held_since = clock()
    recurred_at = None
    while clock() - held_since + interval <= hold_for:
        sleep(interval)
        healthy, last = sample()
        if healthy is False:
            recurred_at = _iso(time.time())
            break
    outcome = "recurred" if recurred_at else "recovered"
    return {"outcome": outcome, "recovered": outcome == "recovered", "recovered_at": recovered_at,
            "recurred_at": recurred_at, "last_value": last, "samples": samples[-200:]}
