"""Prometheus metrics under the real system's names (prometheus-fastapi-instrumentator and app counters)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# status is the exact code ("500"), as the real alert's status=~"5.." expects
REQUESTS = Counter("http_requests_total", "Total number of requests by method, status and handler.", ["method", "status", "handler"])
LATENCY = Histogram("http_request_duration_seconds", "Latency of HTTP requests by handler.", ["method", "handler"])
APP_INFO = Gauge("app_info", "The release this backend runs (value is always 1).", ["version"])

DB_CONNECTIONS_ACTIVE = Gauge("db_connections_active", "Database connections checked out of the pool.")
DB_CONNECTIONS_MAX = Gauge("db_connections_max", "Size of the database connection pool, overflow included.")
DB_QUERY_DURATION = Histogram("db_query_duration_seconds", "Duration of database queries.", buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5))
CACHE_HITS = Counter("cache_hits_total", "Schedule cache hits.")
CACHE_MISSES = Counter("cache_misses_total", "Schedule cache misses.")
AUTH_FAILURES = Counter("auth_failures_total", "Failed login attempts.")
EXPORT_RECORDS = Counter("data_export_records_total", "Records exported, by user.", ["user_id"])


def set_release(version: str) -> None:
    APP_INFO.clear()
    APP_INFO.labels(version=version).set(1)
