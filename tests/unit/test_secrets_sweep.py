"""The secrets sweep of molecule/shared/harness.py: it finds every kind of lab secret wherever a run could leak it,
names the secret and the place but never prints it, keeps rotated secrets, and really covers every playbook."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Playbooks no molecule test runs through the ``runbook`` fixture (so no -vvv sweep covers them yet). The test below
# fails when one of them gets a test (remove it here then) and when a new playbook has none.
NOT_RUN_BY_THE_FIXTURE: set[str] = set()


def fixture_playbooks() -> dict[str, list[str]]:
    """Playbook → the molecule test files that call ``runbook("<playbook>", ...)`` (a literal or a module constant)."""
    found: dict[str, list[str]] = {}
    for test in sorted(REPO.glob("molecule/*/tests/*.py")):
        tree = ast.parse(test.read_text(encoding="utf-8"))
        constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                     and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                     for target in node.targets if isinstance(target, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "runbook" and node.args:
                first = node.args[0]
                name = first.value if isinstance(first, ast.Constant) else constants.get(first.id) if isinstance(first, ast.Name) else None
                if isinstance(name, str):
                    found.setdefault(name, []).append(str(test.relative_to(REPO)))
    return found


def test_every_playbook_is_run_through_the_sweeping_fixture():
    playbooks = {p.name for p in (REPO / "playbooks").glob("*.yml")}
    covered = fixture_playbooks()
    assert set(covered) <= playbooks, f"tests run playbooks that do not exist: {sorted(set(covered) - playbooks)}"
    missing = playbooks - set(covered)
    assert missing == NOT_RUN_BY_THE_FIXTURE, (
        f"not run by any molecule test through runbook(): {sorted(missing - NOT_RUN_BY_THE_FIXTURE)}; "
        f"now covered (drop from NOT_RUN_BY_THE_FIXTURE): {sorted(NOT_RUN_BY_THE_FIXTURE - missing)}")
    assert len(covered) >= 20


@pytest.fixture(name="harness")
def harness_fixture(tmp_path, monkeypatch):
    """molecule/shared/harness.py on a fake lab state dir holding one of each kind of secret."""
    state = tmp_path / "lab"
    monkeypatch.setenv("LAB_STATE_DIR", str(state))
    monkeypatch.setenv("RUNBOOK_INCIDENT_DIR", str(tmp_path / "incidents"))
    spec = importlib.util.spec_from_file_location("sweep_harness", REPO / "molecule" / "shared" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "sweep_harness", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    (state / "ssh").mkdir(parents=True)
    (state / "secrets.json").write_text(json.dumps({"db_password": "DbPassword-0123456789abcdef", "secret_key": "SigningKey-0123456789abcdef"}))
    env = state / "hosts" / "app1" / "upper" / "etc" / "default"
    env.mkdir(parents=True)
    (env / "residency-scheduler-backend").write_text(
        "SECRET_KEY=RotatedKey-0123456789abcdef\nDATABASE_URL=postgresql://scheduler:UrlPassword-0123456789@127.0.0.1:5432/db\n"
        "LOG_FORMAT=json\nDB_POOL_SIZE=10\n")
    config = state / "hosts" / "ml1" / "heart-disease" / "config"
    config.mkdir(parents=True)
    (config / "config.yaml").write_text("api:\n  auth:\n    secret_key: JwtSecret-0123456789abcdef\n    previous_secret_keys: [OldJwt-0123456789abcdef]\n"
                                        "    api_keys: [hdk_ApiKeyOne0123456789, hdk_ApiKeyTwo0123456789]\n    algorithm: HS256\n"
                                        "    access_token_expire_minutes: 30\n")
    (state / "ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
                                              "-----END OPENSSH PRIVATE KEY-----\n")
    monkeypatch.setattr(module, "SECRETS_SEEN", {})
    return module


def test_the_sweep_reads_every_kind_of_secret_and_nothing_else(harness):
    names = set(harness.lab_secrets().values())
    assert names == {
        "secrets.json:db_password", "secrets.json:secret_key",
        "app1:/etc/default/residency-scheduler-backend:SECRET_KEY",
        "app1:/etc/default/residency-scheduler-backend:DATABASE_URL (password)",
        "ml1:/opt/heart-disease/config/config.yaml:api.auth.secret_key",
        "ml1:/opt/heart-disease/config/config.yaml:api.auth.previous_secret_keys[0]",
        "ml1:/opt/heart-disease/config/config.yaml:api.auth.api_keys[0]",
        "ml1:/opt/heart-disease/config/config.yaml:api.auth.api_keys[1]",
        "ssh/id_ed25519 (line 1)",
    }


def test_a_leak_anywhere_is_named_without_its_value(harness, tmp_path):
    harness.lab_secrets()
    incidents = tmp_path / "incidents" / "run"
    (incidents / "HighErrorRate-1").mkdir(parents=True)
    (incidents / "HighErrorRate-1" / "timeline.jsonl").write_text('{"event": "ok"}\n{"args": "password=UrlPassword-0123456789"}\n')
    notifications = harness.LAB_STATE / "hosts" / "mon1" / "upper" / "var" / "log" / "alertmanager-webhook" / "notifications.jsonl"
    notifications.parent.mkdir(parents=True)
    notifications.write_text('{"old": "SigningKey-0123456789abcdef"}\n')
    start = notifications.stat().st_size  # a leak before the run is not this run's
    with notifications.open("a") as handle:
        handle.write('{"text": "key hdk_ApiKeyTwo0123456789"}\n')
    leaks = harness.secret_leaks({"stdout": "ok\nTASK [x]\nJwtSecret-0123456789abcdef\n", "stderr": ""}, incidents, start)
    assert sorted(leaks) == sorted([
        "ml1:/opt/heart-disease/config/config.yaml:api.auth.secret_key in stdout (line 3)",
        f"app1:/etc/default/residency-scheduler-backend:DATABASE_URL (password) in {incidents}/HighErrorRate-1/timeline.jsonl (line 2)",
        "ml1:/opt/heart-disease/config/config.yaml:api.auth.api_keys[1] in mon1:/var/log/alertmanager-webhook/notifications.jsonl (line 1)",
    ])
    assert not any(secret in " ".join(leaks) for secret in harness.SECRETS_SEEN)
    # a part of a secret is no leak; what the receiver got before is not looked at again
    assert harness.secret_leaks({"stdout": "nothing here", "stderr": "SigningKey-0123456789"}, tmp_path / "none",
                                notifications.stat().st_size) == []


def test_a_rotated_secret_stays_swept(harness):
    harness.lab_secrets()
    config = harness.LAB_STATE / "hosts" / "ml1" / "heart-disease" / "config" / "config.yaml"
    config.write_text("api:\n  auth:\n    secret_key: NewJwtSecret-0123456789abcdef\n    api_keys: [hdk_NewKey0123456789abc]\n")
    leaks = harness.secret_leaks({"stdout": "retired hdk_ApiKeyOne0123456789; new hdk_NewKey0123456789abc"}, harness.LAB_STATE / "x", 0)
    assert sorted(leaks) == ["ml1:/opt/heart-disease/config/config.yaml:api.auth.api_keys[0] (rotation 2) in stdout (line 1)",
                             "ml1:/opt/heart-disease/config/config.yaml:api.auth.api_keys[0] in stdout (line 1)"]
