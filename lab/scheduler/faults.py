"""Fault injection: a per-host JSON file, re-read when it changes, and release defects.

The file maps fault names to their settings, e.g.::

    {"error_burst": {"rate": 0.5, "kind": "database", "endpoints": ["/api/v1/schedules"]}}

Each name maps to an effect class in ``EFFECTS``; add a class there to add a fault.

A fault whose settings carry ``"until_restart": true`` and ``"armed_at": <epoch seconds>`` is a condition of the
running process (a leak, a runaway thread, a runtime override): a process started after ``armed_at`` ignores it, so a
restart really clears it while the file still records that the fault was switched on.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from .errors import DEFAULT_ENDPOINTS, KINDS


@dataclass(frozen=True)
class ErrorBurst:
    """A share (``rate``) of requests to ``endpoints`` fail with an exception of ``kind``."""

    rate: float
    kind: str
    endpoints: tuple[str, ...]

    @classmethod
    def from_spec(cls, spec: dict) -> ErrorBurst:
        rate = float(spec.get("rate", 0.5))
        kind = spec.get("kind", "database")
        endpoints = tuple(spec.get("endpoints") or DEFAULT_ENDPOINTS)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        return cls(rate=rate, kind=kind, endpoints=endpoints)

    def failure_for(self, handler: str, rng: random.Random) -> str | None:
        """The kind of failure this request gets, or None."""
        if ("*" in self.endpoints or handler in self.endpoints) and rng.random() < self.rate:
            return self.kind
        return None

    def describe(self) -> dict:
        return {"rate": self.rate, "kind": self.kind, "endpoints": list(self.endpoints)}


@dataclass(frozen=True)
class SlowResponses:
    """Every request to ``endpoints`` waits ``delay`` seconds first (a slow dependency)."""

    delay: float
    endpoints: tuple[str, ...]

    @classmethod
    def from_spec(cls, spec: dict) -> SlowResponses:
        delay = float(spec.get("delay", 2.5))
        if not 0.0 < delay <= 30.0:
            raise ValueError(f"delay must be between 0 and 30 seconds, not {delay}")
        return cls(delay=delay, endpoints=tuple(spec.get("endpoints") or DEFAULT_ENDPOINTS))

    def delay_for(self, handler: str) -> float:
        return self.delay if ("*" in self.endpoints or handler in self.endpoints) else 0.0

    def failure_for(self, _handler: str, _rng) -> None:
        return None

    def describe(self) -> dict:
        return {"delay": self.delay, "endpoints": list(self.endpoints)}


@dataclass(frozen=True)
class Background:
    """A fault carried out by a thread of the app (see ``app.Actors``): its settings only."""

    settings: tuple

    @classmethod
    def from_spec(cls, spec: dict) -> Background:
        for key, value in spec.items():
            if not isinstance(value, (int, float, str)) or isinstance(value, bool):
                raise ValueError(f"{key} must be a number or a string, not {value!r}")
        return cls(settings=tuple(sorted(spec.items())))

    def get(self, key: str, default):
        return type(default)(dict(self.settings).get(key, default))

    def failure_for(self, _handler: str, _rng) -> None:
        return None

    def describe(self) -> dict:
        return dict(self.settings)


# pool_leak: connections checked out and never returned; cpu_burn: a spinning thread;
# memory_leak: memory allocated and kept; cache_ttl: schedule cache entries expire after `ttl` seconds;
# crash_on_start: the app exits at startup (read once, before serving).
EFFECTS = {"error_burst": ErrorBurst, "slow_responses": SlowResponses, "pool_leak": Background, "cpu_burn": Background,
           "memory_leak": Background, "cache_ttl": Background, "crash_on_start": Background}


PROCESS_STARTED = time.time()


class FaultSwitch:
    """Active faults from ``path``; the file is parsed again only when its stat changes."""

    def __init__(self, path: Path):
        self.path = path
        self._signature = None
        self.active: dict[str, object] = {}

    def refresh(self) -> dict[str, object]:
        try:
            st = self.path.stat()
            signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            signature = None
        if signature != self._signature:
            self._signature = signature
            self.active = self._load() if signature else {}
            logger.info("Fault switch changed: {}", {name: effect.describe() for name, effect in self.active.items()} or "no faults")
        return self.active

    def _load(self) -> dict[str, object]:
        try:
            spec = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError) as exc:
            logger.error("Ignoring unreadable fault file {}: {}", self.path, exc)
            return {}
        active = {}
        for name, settings in spec.items():
            effect = EFFECTS.get(name)
            if effect is None:
                continue  # a fault for another service
            settings = dict(settings or {})
            armed_at = settings.pop("armed_at", None)
            if settings.pop("until_restart", False) and isinstance(armed_at, (int, float)) and armed_at < PROCESS_STARTED:
                logger.info("Fault {} was switched on before this process started: cleared by the restart", name)
                continue
            try:
                active[name] = effect.from_spec(settings)
            except (TypeError, ValueError) as exc:
                logger.error("Ignoring fault {} in {}: {}", name, self.path, exc)
        return active
