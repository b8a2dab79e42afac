"""The resource runbooks' decisions: which hosts an alert names, runaway vs traffic, leak vs not, the slow cause."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._resources import (
    alert_hosts,
    by_host,
    cpu_verdict,
    memory_verdict,
    slow_verdict,
)

URLS = {"app1": "http://127.0.0.1:18001", "app2": {"scheduler_base_url": "http://127.0.0.1:18002"}}
MIB = 1048576


@pytest.mark.parametrize("labels, expected", [
    ({"host": "app2"}, ["app2"]),
    ({"instance": "127.0.0.1:18001"}, ["app1"]),  # the instance matched against the host's URL
    ({"instance": "app2:8000"}, ["app2"]),  # the instance's host part named like the inventory host
    ({"host": "db9"}, ["app1", "app2"]),  # names no candidate: every candidate
    ({}, ["app1", "app2"]),
])
def test_alert_hosts(labels, expected):
    assert alert_hosts({"labels": labels}, ["app1", "app2"], URLS) == expected


def test_alert_hosts_without_alert_is_every_candidate():
    assert alert_hosts(None, ["app1"], {}) == ["app1"]


def test_by_host_drops_instances_of_no_candidate():
    assert by_host({"127.0.0.1:18002": 3.5, "127.0.0.1:9999": 1}, ["app1", "app2"], URLS) == {"app2": 3.5}


def test_cpu_runaway_against_its_peer():
    verdict = cpu_verdict({"app1": 95, "app2": 10}, {"app1": 7, "app2": 7}, threshold=80)
    assert verdict["runaway"] == ["app1"] and verdict["traffic"] == [] and verdict["cause"] == "a runaway process"


def test_cpu_traffic_when_cpu_follows_requests():
    verdict = cpu_verdict({"app1": 90, "app2": 30}, {"app1": 30, "app2": 10}, threshold=80)
    assert verdict["traffic"] == ["app1"] and verdict["runaway"] == []


def test_cpu_with_no_requests_is_a_runaway_and_limits_apply():
    verdict = cpu_verdict({"app1": 90, "app2": 90}, {"app1": 0, "app2": 5}, threshold=80, hosts=["app1"])
    assert verdict["hot"] == ["app1"] and verdict["runaway"] == ["app1"]


def test_cpu_every_instance_hot_uses_the_baseline():
    verdict = cpu_verdict({"a": 90, "b": 85}, {"a": 20, "b": 20}, baseline_requests={"a": 5, "b": 19})
    assert verdict["traffic"] == ["a"] and verdict["runaway"] == ["b"]


def test_cpu_nothing_hot():
    assert cpu_verdict({"a": 10}, {"a": 1})["cause"].startswith("none")


def test_memory_leak_in_the_service():
    verdict = memory_verdict({"app1": 2, "app2": 80}, {"app1": 450 * MIB, "app2": 70 * MIB}, {"app1": 70 * MIB, "app2": 65 * MIB},
                             top_process={"app1": {"pid": 99, "name": "python"}}, service_pids={"app1": 99})
    assert verdict["low"] == ["app1"] and verdict["leaking"] == ["app1"] and verdict["cause"] == "a memory leak in the service"


def test_memory_held_by_another_process_is_not_a_leak():
    verdict = memory_verdict({"app1": 2}, {"app1": 450 * MIB}, {"app1": 70 * MIB},
                             top_process={"app1": {"pid": 7, "name": "java"}}, service_pids={"app1": 99})
    assert verdict["leaking"] == [] and verdict["other"] == ["app1"] and "java" in verdict["details"][0]["why"]


def test_memory_without_growth_or_history_is_not_a_leak():
    assert memory_verdict({"a": 5}, {"a": 300 * MIB}, {"a": 290 * MIB})["other"] == ["a"]
    assert memory_verdict({"a": 5}, {}, {})["details"][0]["why"].startswith("the service's memory history is missing")


@pytest.mark.parametrize("kwargs, cause, remedy, targets", [
    ({"long_running": 2}, "slow database queries", "cancel_long_queries", []),
    ({"db_p95": 1.5}, "slow database queries", "cancel_long_queries", []),
    ({"pool_usage": {"app1": 100, "app2": 10}}, "database connection pool exhausted", "pool_runbook", ["app1"]),
    ({"cache_hit_rate": 0.2}, "low cache hit rate", "cache_runbook", []),
    ({"cpu": {"app1": 99}}, "resource-bound (CPU)", "cpu_runbook", ["app1"]),
    ({"memory_available": {"app1": 3}}, "resource-bound (memory)", "memory_runbook", ["app1"]),
    ({}, "degraded instance (slow while its dependencies and peers are fine)", "restart", ["app1"]),
])
def test_slow_cause_in_the_runbooks_order(kwargs, cause, remedy, targets):
    verdict = slow_verdict({"app1": 2.6, "app2": 0.2}, **kwargs)
    assert (verdict["cause"], verdict["remediation"], verdict["targets"], verdict["slow"]) == (cause, remedy, targets, ["app1"])


def test_slow_everywhere_with_healthy_dependencies_is_the_code_path():
    verdict = slow_verdict({"app1": 2.6, "app2": 3.1}, db_p95=0.01, cache_hit_rate=0.99)
    assert verdict["remediation"] == "escalate" and verdict["slow"] == ["app2", "app1"]


def test_nothing_slow():
    assert slow_verdict({"app1": 0.3}, long_running=5)["remediation"] == "none"
