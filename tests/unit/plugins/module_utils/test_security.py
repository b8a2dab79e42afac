"""The security runbooks' decisions: spray against stuffing with guard rails, suspicious sources, export policy."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _security as security


def ip_row(ip, count, accounts):
    return {"key": ip, "count": count, "accounts": len(accounts), "accounts_sample": sorted(accounts)[:10],
            "first_seen": "2026-11-23T10:00:00+00:00", "last_seen": "2026-11-23T10:05:00+00:00"}


def account_row(account, count, ips):
    return {"key": account, "count": count, "ips": len(ips), "ips_sample": sorted(ips)[:10],
            "first_seen": "2026-11-23T10:00:00+00:00", "last_seen": "2026-11-23T10:05:00+00:00"}


def host(name, by_ip, by_account, indicators):
    return {"host": name, "auth": {"failures": sum(r["count"] for r in by_ip), "by_ip": by_ip, "by_account": by_account,
                                   "indicators": indicators}}


SPRAY = [host("app1",
              [ip_row("203.0.113.66", 150, [f"user{i}" for i in range(120)]), ip_row("127.0.0.1", 20, ["avery"])],
              [account_row("avery", 20, ["127.0.0.1"])],
              [{"indicator": "same_ip_many_accounts", "ip": "203.0.113.66", "accounts": 120, "attempts": 150},
               {"indicator": "machine_regular_timing", "ip": "127.0.0.1", "attempts": 20}])]

STUFFING = [host("app1",
                 [ip_row(f"198.51.100.{i}", 5 if i < 30 else 1, ["victim"]) for i in range(1, 60)]
                 + [ip_row("10.1.2.3", 9, ["victim"]), ip_row("192.0.2.7", 4, ["victim", "other"])],
                 [account_row("victim", 200, [f"198.51.100.{i}" for i in range(1, 60)])],
                 [{"indicator": "distributed_ips_same_account", "account": "victim", "ips": 59, "attempts": 200}])]


def test_spray_blocks_the_spraying_address_and_never_an_internal_one():
    decision = security.auth_attack(SPRAY)
    assert decision["pattern"] == "password_spray"
    assert decision["block"] == ["203.0.113.66"]
    assert [p["address"] for p in decision["protected"]] == ["127.0.0.1"]  # flagged for timing, but loopback
    assert decision["accounts"] == []
    assert "password spray from 203.0.113.66" in decision["cause"]


def test_stuffing_secures_the_account_and_blocks_only_clear_attackers_within_the_bound():
    decision = security.auth_attack(STUFFING, max_addresses=20, min_failures=3)
    assert decision["pattern"] == "credential_stuffing"
    assert decision["accounts"] == ["victim"]
    assert len(decision["block"]) == 20
    assert all(a.startswith("198.51.100.") for a in decision["block"])
    # 29 addresses failed 5 times on the victim only: 20 blocked, 9 over the bound; 10.1.2.3 is internal;
    # 192.0.2.7 also tried another account, one-attempt addresses are not clearly attackers.
    assert len(decision["over_limit_addresses"]) == 9
    assert [p["address"] for p in decision["protected"]] == ["10.1.2.3"]
    assert "192.0.2.7" not in decision["block"] + decision["over_limit_addresses"]


def test_service_accounts_and_allowlisted_networks_are_left_alone():
    decision = security.auth_attack(STUFFING, protect=["198.51.100.0/26"], service_accounts=["VICTIM"])
    assert decision["accounts"] == [] and decision["service_accounts_skipped"] == ["victim"]
    assert decision["block"] == []


def test_bad_protect_entry_is_named():
    with pytest.raises(security.SecurityError, match="not-a-net"):
        security.auth_attack(SPRAY, protect=["not-a-net"])


def record(ip, request="", reason="injection_probe", user=None):
    fields = {"ip": ip, "reason": reason, "request": request}
    if user:
        fields["user"] = user
    return {"timestamp": "2026-11-23T10:00:00+00:00", "fields": fields}


def test_suspicious_sources_are_classified_confirmed_or_flagged():
    records = ([record("203.0.113.99", "/api/v1/people?type=' OR '1'='1"),
                record("203.0.113.99", "/api/v1/schedules?start=../../etc/passwd"),
                record("203.0.113.99", "/api/v1/people?type=<script>alert(1)</script>", user="mallory")]
               + [record("198.51.100.4", "/api/v1/people?x=1 UNION SELECT password FROM users")]
               + [record("10.0.0.5", "/a/../b")] * 4)
    decision = security.suspicious_sources([{"host": "app1", "records": records}], service_accounts=[], min_events=3)
    assert decision["classes"] == {"sql_injection": 2, "path_traversal": 5, "script_injection": 1}
    assert decision["confirmed"] == ["10.0.0.5", "203.0.113.99"]
    assert decision["review"] == ["198.51.100.4"]
    assert decision["block"] == ["203.0.113.99"]  # 10.0.0.5 is internal: confirmed, never blocked
    assert decision["lock"] == ["mallory"]


def test_auth_reasons_are_an_authentication_attack():
    decision = security.suspicious_sources([{"host": "app1", "records": [record("203.0.113.66", reason="password_spray")]}])
    assert decision["auth_attack"] and decision["classes"] == {"password_spray": 1}


def test_export_policy():
    accounts = [{"id": 5, "account": "5", "username": "res@lab", "role": "resident"},
                {"id": 7, "account": "7", "username": "coord@lab", "role": "coordinator"},
                {"id": 9, "account": "9", "username": "pd@lab", "role": "faculty"}]
    policy = {"threshold": 1000, "authorised_roles": ["coordinator"], "authorised_users": {"pd@lab": "annual report"}}
    review = security.export_review({"5": 2000.0, "7": 5000.0, "9": 1500.0, "11": 50.0}, accounts, policy)
    assert [(u["user_id"], u["authorised"]) for u in review["users"]] == [("7", True), ("5", False), ("9", True)]
    assert review["contain"] == ["5"]
    assert "res@lab (resident) exported 2000 records: NOT authorised" in review["cause"]
    assert review["authorised"][1]["basis"] == "annual report"
