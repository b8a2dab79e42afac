"""The schedule cache: Redis (the lab's cache1) with a TTL, or in-process when no REDIS_URL is set.

Hits and misses are counted in ``cache_hits_total`` / ``cache_misses_total``. A Redis
that does not answer is a miss (the backend reads PostgreSQL instead), logged at most
once every 30 s, as a real backend degrades.
"""

from __future__ import annotations

import json
import time

from loguru import logger

from . import metrics

try:
    import redis
except ImportError:  # pragma: no cover
    redis = None


class LocalCache:
    def __init__(self, ttl: float):
        self.ttl = ttl
        self._items: dict = {}

    def get(self, key: str):
        hit = self._items.get(key)
        if hit and time.monotonic() - hit[0] < self.ttl:
            metrics.CACHE_HITS.inc()
            return hit[1]
        metrics.CACHE_MISSES.inc()
        return None

    def put(self, key: str, value) -> None:
        self._items[key] = (time.monotonic(), value)


class RedisCache:
    """JSON values under ``residency-scheduler:<key>`` with a TTL in seconds (PSETEX, so a fault can make it tiny)."""

    PREFIX = "residency-scheduler:"

    def __init__(self, url: str, ttl: float):
        if redis is None:
            raise RuntimeError("the redis package is not installed: pip install -r requirements/lab.txt")
        self.ttl = max(0.001, float(ttl))
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._warned_at = 0.0

    def _unavailable(self, exc: Exception) -> None:
        if time.monotonic() - self._warned_at > 30:
            self._warned_at = time.monotonic()
            logger.warning("Schedule cache unavailable, reading the database: {}: {}", type(exc).__name__, exc)

    def get(self, key: str):
        try:
            raw = self.client.get(self.PREFIX + key)
        except redis.RedisError as exc:
            self._unavailable(exc)
            raw = None
        if raw is None:
            metrics.CACHE_MISSES.inc()
            return None
        metrics.CACHE_HITS.inc()
        return json.loads(raw)

    def put(self, key: str, value) -> None:
        try:
            self.client.psetex(self.PREFIX + key, max(1, int(self.ttl * 1000)), json.dumps(value, default=str))
        except redis.RedisError as exc:
            self._unavailable(exc)


def make_cache(redis_url: str, ttl: float):
    return RedisCache(redis_url, ttl) if redis_url else LocalCache(ttl)
