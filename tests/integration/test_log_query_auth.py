"""log_query mode=auth on logs written by the lab's real services, attacked from several loopback addresses.

The Residency Scheduler stand-in (FastAPI, Loguru, every LOG_FORMAT) and the Heart Disease API (python
logging) run as real processes; failed logins come from distinct 127.0.0.0/8 source addresses, so the IPs
in the logs are the ones the services saw.  Three attacks, as the runbook lists its indicators: one address
trying many accounts, many addresses trying one account, and a script at a fixed pace.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.modules import log_query
from tests.unit.plugins.modules.utils import run_module

from .conftest import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPRAYER = "127.0.0.2"
BOTNET = [f"127.0.0.{n}" for n in range(10, 16)]
SCRIPT = "127.0.0.20"
PEOPLE = "127.0.0.30"


def post(port: int, source: str, path: str, body: dict, headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, source_address=(source, 0), timeout=10)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_healthy(proc: subprocess.Popen, port: int, path: str, stderr: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, stderr.read_text(errors="replace")[-2000:]
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(stderr.read_text(errors="replace")[-2000:])


def attack(send) -> None:
    """``send(source_address, account)`` one failed login; the three attacks and a person who mistyped three times."""
    for n in range(6):
        assert send(SPRAYER, f"victim{n}@example.org") == 401
    for source in BOTNET:
        assert send(source, "admin@example.org") == 401
    for _attempt in range(12):
        assert send(SCRIPT, "dave@example.org") == 401
        time.sleep(0.1)
    for pause in (0.05, 0.6, 0):
        assert send(PEOPLE, "erin@example.org") == 401
        time.sleep(pause)


def check(result: dict, victims: set, admin: str, dave: str) -> None:
    auth = result["auth"]
    fired = {(i["indicator"], i.get("ip") or i.get("account")) for i in auth["indicators"]}
    assert fired == {("same_ip_many_accounts", SPRAYER), ("distributed_ips_same_account", admin),
                     ("machine_regular_timing", SCRIPT)}, auth["indicators"]
    assert auth["failures"] == 6 + len(BOTNET) + 12 + 3
    by_ip = {row["key"]: row for row in auth["by_ip"]}
    assert by_ip[SPRAYER]["accounts"] == 6 and set(by_ip[SPRAYER]["accounts_sample"]) == victims
    assert by_ip[SCRIPT]["count"] == 12 and by_ip[SCRIPT]["accounts_sample"] == [dave]
    assert by_ip[SCRIPT]["interval_cv"] < 0.25 < by_ip[PEOPLE]["interval_cv"]
    by_account = {row["key"]: row for row in auth["by_account"]}
    assert by_account[admin]["ips"] == len(BOTNET) and set(by_account[admin]["ips_sample"]) == set(BOTNET)
    assert auth["blocklist_candidates"] == sorted([SPRAYER, SCRIPT])
    assert sum(row["failures"] for row in auth["timeline"]["buckets"]) == auth["failures"]
    assert auth["timeline"]["bucket_seconds"] == 60


@pytest.mark.parametrize("log_format", ["json", "text", "logfmt", "gelf"])
def test_scheduler_failed_logins_in_every_log_format(monkeypatch, tmp_path, log_format):
    port = free_port()
    log_file = tmp_path / "scheduler.log"
    stderr = tmp_path / "stderr"
    env = dict(os.environ, PYTHONPATH=str(REPO / "lab"))
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "scheduler", "--port", str(port), "--log-file", str(log_file),
                                 "--log-format", log_format, "--releases-dir", str(tmp_path / "releases"),
                                 "--fault-file", str(tmp_path / "faults.json")], env=env, stdout=err, stderr=err)
    try:
        wait_healthy(proc, port, "/health", stderr)
        attack(lambda source, account: post(port, source, "/api/v1/auth/login", {"username": account, "password": "wrong"}))
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    args = {"path": str(log_file), "mode": "auth", "top": 50, "_ansible_check_mode": True}
    result, failed = run_module(monkeypatch, log_query.main, args)
    assert not failed, result
    expected_format = {"json": "json", "text": "loguru_text", "logfmt": "logfmt", "gelf": "json"}[log_format]
    assert result["changed"] is False and expected_format in result["files"][0]["format"], result["files"]
    check(result, {f"victim{n}@example.org" for n in range(6)}, "admin@example.org", "dave@example.org")
    assert "indicators: distributed_ips_same_account x1, machine_regular_timing x1, same_ip_many_accounts x1" in result["summary"]


def test_heart_disease_api_bad_keys(monkeypatch, tmp_path):
    """The ML API logs ``auth_failure ip=… key=<key id> reason=…`` with python logging's default layout."""
    sys.path.insert(0, str(REPO))
    from lab.heart_disease.common import Home, key_id  # pylint: disable=import-outside-toplevel

    home = Home.of(tmp_path / "home")
    api_port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "lab.heart_disease.build", "--home", str(home.root), "--api-port", str(api_port),
                    "--worker-port", str(free_port())], cwd=REPO, env=env, capture_output=True, timeout=120, check=True)
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "lab.heart_disease.api", "--home", str(home.root), "--port", str(api_port)],
                                cwd=REPO, env=env, stdout=err, stderr=err)
    try:
        wait_healthy(proc, api_port, "/health", stderr)
        attack(lambda source, account: post(api_port, source, "/predict", {}, {"X-API-Key": f"hdk_{account.split('@')[0]}"}))
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    log = home.logs / "api.log"
    assert " - heart_disease.auth - WARNING - auth_failure ip=" in log.read_text()
    args = {"path": str(log), "mode": "auth", "top": 50, "format": "python_logging"}
    result, failed = run_module(monkeypatch, log_query.main, args)
    assert not failed, result
    check(result, {key_id(f"hdk_victim{n}") for n in range(6)}, key_id("hdk_admin"), key_id("hdk_dave"))
