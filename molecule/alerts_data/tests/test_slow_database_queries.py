"""SlowDatabaseQueries: the activity feed reads three years of audit history through an archive table that has no
occurred_at index (lab fault missing_index). The runbook names the missing index, adds it only with remediation,
the feed is fast again, and a rerun adds nothing."""

from __future__ import annotations

import json

import requests

from harness import PORT_OFFSET, fault, lab_ssh, wait_for_value

P95 = ('histogram_quantile(0.95, sum by (le, host) (rate(db_query_duration_seconds_bucket'
       '{job="residency-scheduler-backend",host="app1"}[30s])))')
INDEX = "audit_log_archive_occurred_at_idx"
DEFINITION = f"CREATE INDEX CONCURRENTLY {INDEX} ON public.audit_log_archive (occurred_at)"


def psql(sql: str) -> str:
    return lab_ssh("db1", f"cd /tmp && runuser -u postgres -- psql -X -At -p {15432 + PORT_OFFSET} -d residency_scheduler -c \"{sql}\"")


def indexes() -> list[str]:
    return sorted(psql("SELECT indexname FROM pg_indexes WHERE tablename IN ('audit_log', 'audit_log_archive')").split())


def scans(node: dict) -> list[tuple[str, str]]:
    return [(node["Node Type"], node.get("Relation Name", ""))] + [s for child in node.get("Plans", []) for s in scans(child)]


def feed_status() -> int:
    """One read of the activity feed through app1, as the dashboards do."""
    base = f"http://127.0.0.1:{18001 + PORT_OFFSET}/api/v1"
    token = requests.post(f"{base}/auth/login", json={"username": "avery.mensah@residency.lab", "password": "lab-password"},
                          timeout=30).json()["access_token"]
    return requests.get(f"{base}/audit?hours=24&limit=50", headers={"authorization": f"Bearer {token}"}, timeout=120).status_code


def test_slow_database_queries(runbook):
    with fault("missing_index") as started:
        planted = json.loads(started.stdout.split(": ", 1)[1])
        assert planted["rows"] >= 250_000 and planted["feed_seconds"] >= 1
        wait_for_value(P95, lambda v: v > 1, "app1's p95 query time over 1 s")
        before = indexes()
        assert INDEX not in before

        dry = runbook("slow_database_queries.yml", remediate=False)
        assert dry.ok, dry.output[-3000:]
        assert dry.decision["missing_indexes"] == [DEFINITION]
        assert dry.actions == [] and indexes() == before  # remediation off changes nothing

        run = runbook("slow_database_queries.yml", remediate=True)
        assert run.ok, run.output[-3000:]
        assert [a["detail"] for a in run.actions] == [DEFINITION]
        assert run.record["status"] == "resolved" and INDEX in run.report
        assert indexes() == sorted(before + [INDEX])
        # the feed's statement reads the archive through the new index, not by a sequential scan any more
        plan = psql("EXPLAIN (FORMAT JSON) " + planted["statement"])
        assert INDEX in plan and not [n for n in scans(json.loads(plan)[0]["Plan"]) if n == ("Seq Scan", "audit_log_archive")]
        assert feed_status() == 200

        rerun = runbook("slow_database_queries.yml", remediate=True)
        assert rerun.ok, rerun.output[-3000:]
        assert rerun.actions == [] and not rerun.fleet_changed and indexes() == sorted(before + [INDEX])
    assert INDEX not in indexes()  # off drops the archive, its index with it
