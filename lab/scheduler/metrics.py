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


SUSPICIOUS = Counter("suspicious_activity_total", "Requests or login patterns flagged as suspicious, by reason.", ["reason"])
for _reason in ("injection_probe", "password_spray", "credential_stuffing"):
    SUSPICIOUS.labels(reason=_reason)  # exported at 0 from the start, so increase() sees the first one


class HostMemoryCollector:
    """``node_memory_MemTotal_bytes`` / ``node_memory_MemAvailable_bytes`` for this app host.

    The lab's hosts share the machine's memory and nspawn does not enforce cgroup limits, so the
    host's memory is a budget (``LAB_MEMORY_BUDGET_MB``, default 384) and what is available is the
    budget minus this process's resident memory (the host's one workload). Real hosts get these
    from node-exporter."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes

    @staticmethod
    def rss_bytes() -> int:
        try:
            pages = int(open("/proc/self/statm", encoding="ascii").read().split()[1])  # pylint: disable=consider-using-with
        except (OSError, ValueError, IndexError):
            return 0
        return pages * 4096

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily  # pylint: disable=import-outside-toplevel

        yield GaugeMetricFamily("node_memory_MemTotal_bytes", "Memory of the host (the lab host's budget).", value=self.budget)
        yield GaugeMetricFamily("node_memory_MemAvailable_bytes", "Memory available on the host (budget minus the workload's RSS).",
                                value=max(0, self.budget - self.rss_bytes()))


class CPUDemandCollector:
    """``process_cpu_demand_seconds_total``: CPU time this process's threads used **or waited for** (runnable, on the
    run queue), from ``/proc/self/task/*/schedstat``.

    The lab's hosts share a small machine with other labs: a backend that burns CPU gets only its share of the cores,
    so ``rate(process_cpu_seconds_total)`` says more about the machine's load than about the backend. A thread that
    always wants the CPU is running or runnable all the time whatever the load, so this counter grows by one second per
    second for each such thread; on an idle machine it equals ``process_cpu_seconds_total``. Threads that ended keep
    what they counted (the total only grows)."""

    def __init__(self):
        import threading  # pylint: disable=import-outside-toplevel

        self._lock = threading.Lock()
        self._last: dict[str, int] = {}
        self._total_ns = 0

    def sample(self) -> float:
        import os  # pylint: disable=import-outside-toplevel

        with self._lock:
            try:
                tids = os.listdir("/proc/self/task")
            except OSError:
                tids = []
            for tid in tids:
                try:
                    with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as handle:
                        on_cpu, waiting = (int(v) for v in handle.read().split()[:2])
                except (OSError, ValueError):
                    continue
                now = on_cpu + waiting
                self._total_ns += max(0, now - self._last.get(tid, 0))
                self._last[tid] = now
            return self._total_ns / 1e9

    def collect(self):
        from prometheus_client.core import CounterMetricFamily  # pylint: disable=import-outside-toplevel

        yield CounterMetricFamily("process_cpu_demand_seconds", "CPU time the threads used or waited for on the run queue (lab).",
                                  value=self.sample())
