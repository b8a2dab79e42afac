"""The runbooks as AWX runs them: ansible-runner, the project checked out, and the extra vars AWX passes.

A job template of controller/configure.yml launches ``playbooks/<name>.yml`` with AWX's own variables
(``awx_job_id``, ``awx_job_template_name``, … and their ``tower_`` twins) plus the prompted ones the rulebook
sends (``alert``, ``runbook_incident_dir``, ``runbook_remediate``). The same incident is joined by a second launch
for the same alert, and the ``runbook resolve_incident`` template closes it. Also: ansible-builder turns
execution-environment.yml (and the rulebook's decision environment) into a build context with the collection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ansible_runner
import pytest
import yaml

from tests.integration._playbooks import local_host
from tests.integration._redis import RedisServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ALERT = {"status": "firing", "fingerprint": "c0ffee1234", "startsAt": "2026-11-23T09:45:00Z",
         "labels": {"alertname": "LowCacheHitRate", "severity": "warning", "service": "residency-scheduler-redis",
                    "job": "residency-scheduler-backend"},
         "annotations": {"summary": "Schedule cache hit rate 40%", "playbook": "low_cache_hit_rate.yml"}}


def awx_vars(job_id: int, template: str, **prompted) -> dict:
    """What AWX puts in a job's extra vars: its job metadata, then the variables prompted on launch."""
    meta = {"job_id": job_id, "job_launch_type": "workflow", "job_template_id": 7, "job_template_name": template,
            "user_id": 1, "user_name": "eda-service", "project_revision": "0123abcd", "project_scm_branch": "main",
            "inventory_id": 2, "inventory_name": "Residency Scheduler and Heart Disease Prediction",
            "execution_node": "awx-ee", "workflow_job_id": 40, "workflow_job_name": "runbook low_cache_hit_rate"}
    return {**{f"awx_{k}": v for k, v in meta.items()}, **{f"tower_{k}": v for k, v in meta.items()}, **prompted}


def launch(tmp_path: Path, job_id: int, playbook: str, inventory: dict, **prompted) -> ansible_runner.Runner:
    template = "runbook " + Path(playbook).stem
    private = tmp_path / f"job_{job_id}"
    private.mkdir()
    return ansible_runner.run(
        private_data_dir=str(private), project_dir=str(REPO), playbook=playbook, inventory=inventory,
        extravars=awx_vars(job_id, template, **prompted), quiet=True, ident=str(job_id),
        envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
                 "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "PATH": f"{BIN}:{os.environ['PATH']}"})


def changed_hosts(run: ansible_runner.Runner) -> set[str]:
    return {e["event_data"].get("host") for e in run.events
            if e.get("event") == "runner_on_ok" and e["event_data"].get("res", {}).get("changed")}


def test_a_runbook_launched_as_awx_does_joins_its_incident_and_resolve_closes_it(tmp_path):
    server = RedisServer(tmp_path)
    incidents = tmp_path / "incidents"
    inventory = {"all": {"hosts": {"localhost": local_host()}, "children": {"cache": {"hosts": {"cache1": local_host(
        redis_host="127.0.0.1", redis_port=server.port, redis_persist_config=False)}}}}}
    try:
        prompted = {"alert": ALERT, "runbook_incident_dir": str(incidents), "runbook_remediate": False,
                    "cache_sample_seconds": 2}
        first = launch(tmp_path, 101, "playbooks/low_cache_hit_rate.yml", inventory, **prompted)
        assert (first.status, first.rc) == ("successful", 0), first.stdout.read()[-4000:]
        assert changed_hosts(first) <= {"localhost"}  # investigation only: nothing changed on the fleet
        [record_file] = incidents.glob("*/incident.json")
        record = json.loads(record_file.read_text(encoding="utf-8"))
        assert record["dedup_key"] == "c0ffee1234" and record["alert"]["labels"]["alertname"] == "LowCacheHitRate"
        assert record["remediate"] is False and record["status"] != "resolved"

        second = launch(tmp_path, 102, "playbooks/low_cache_hit_rate.yml", inventory, **prompted)
        assert second.status == "successful"
        assert list(incidents.glob("*/incident.json")) == [record_file]
        assert len(json.loads(record_file.read_text(encoding="utf-8"))["runs"]) == 2  # joined, not a second incident

        resolved = launch(tmp_path, 103, "rulebooks/playbooks/resolve_incident.yml", {"all": {"hosts": {"localhost": local_host()}}},
                          alert={**ALERT, "status": "resolved", "endsAt": "2026-11-23T10:05:00Z"},
                          incident_path=str(record_file.parent))
        assert resolved.status == "successful", resolved.stdout.read()[-3000:]
        record = json.loads(record_file.read_text(encoding="utf-8"))
        assert record["status"] == "resolved" and record["resolved_at"]
        assert any(e["event"] == "alert resolved" and "2026-11-23T10:05:00Z" in e["detail"] for e in record["timeline"])

        missing = launch(tmp_path, 104, "rulebooks/playbooks/resolve_incident.yml", {"all": {"hosts": {"localhost": local_host()}}},
                         alert=ALERT)
        assert missing.status == "failed" and "incident_path" in missing.stdout.read()
    finally:
        server.stop()


@pytest.mark.parametrize("definition", ["execution-environment.yml", "rulebooks/decision-environment.yml"])
def test_ansible_builder_creates_the_build_context(tmp_path, definition):
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    build = REPO / ".build" / "ee"
    built = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(build)],
                           cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    context = tmp_path / "context"
    created = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", str(REPO / definition), "-c", str(context)],
                             cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert created.returncode == 0, created.stdout + created.stderr
    containerfile = next(p for p in (context / "Containerfile", context / "Dockerfile") if p.exists()).read_text(encoding="utf-8")
    assert "collection install --offline --no-deps -p /usr/share/ansible/collections /build/collections/sre-runbooks-" in containerfile
    assert list((context / "_build" / "collections").glob("sre-runbooks-*.tar.gz"))
    spec = yaml.safe_load((REPO / definition).read_text(encoding="utf-8"))
    assert spec["version"] == 3
    if definition == "execution-environment.yml":
        assert (context / "_build" / "requirements.txt").read_text() == (REPO / "requirements" / "runtime.txt").read_text()
        galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
        assert {c["name"] for c in galaxy["collections"]} == {"ansible.posix", "community.general", "community.postgresql"}
    else:
        assert "ansible.eda" in (context / "_build" / "requirements.yml").read_text()
        assert "ansible-rulebook" in (context / "_build" / "requirements.txt").read_text()
