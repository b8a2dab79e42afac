"""rotate_credentials on a real systemd host: the Heart Disease API as the unit ``heart-disease-api.service`` (the lab's own unit
file, the ml1 way: the model home bound at /opt/heart-disease) in a systemd-nspawn host, rotated by ansible-playbook over SSH with
reload_units (SIGHUP through ExecReload) and restart_units (a new process), and a verification failure rolled back."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from ansible_collections.sre.runbooks.plugins.module_utils._rotate import jwt_hs256
from lab.heart_disease.common import key_id

from .conftest import free_port, wait_http, load_lab_module

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
HOST = f"remed-rot-{os.getpid() % 100000}"
UNIT = "heart-disease-api.service"
HOME = "/opt/heart-disease"
CONFIG = f"{HOME}/config/config.yaml"


hosts = load_lab_module("hosts.py", "lab_hosts_for_rotate")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("lab hosts need root")
    state = tmp_path_factory.mktemp("rotate-lab")
    saved = os.environ.get("LAB_STATE_DIR")
    os.environ["LAB_STATE_DIR"] = str(state)
    home = state / "heart-disease"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([str(VENV_BIN / "python"), "-m", "lab.heart_disease.build", "--home", str(home), "--api-port", str(port),
                    "--worker-port", str(free_port())], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    unit = (REPO_ROOT / "lab" / "units" / "heart-disease.service.in").read_text().format(
        description="Heart Disease Prediction API (rotation test)", working_dir=REPO_ROOT, python=VENV_BIN / "python",
        module="lab.heart_disease.api", home=HOME, port=port)
    try:
        hosts.boot(HOST, ssh_port=free_port(), fresh=True, binds=[*hosts.python_binds(), hosts.Bind(home, Path(HOME), False)])
        hosts.install_unit(HOST, UNIT, unit)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", timeout=60)
        inventory = state / "inventory.json"
        # The module needs PyYAML on the target for format=yaml: the host's venv python (bound read-only) has it.
        host_vars = {**hosts.ansible_host_vars(HOST), "ansible_python_interpreter": str(VENV_BIN / "python")}
        inventory.write_text(json.dumps({"all": {"hosts": {HOST: host_vars}}}))
        keys = yaml.safe_load((home / "config" / "config.yaml").read_text())["api"]["auth"]["api_keys"]
        yield {"url": url, "config": home / "config" / "config.yaml", "inventory": inventory, "dir": state, "api_key": keys[0],
               "partner_key": keys[1]}
    finally:
        try:
            hosts.stop(HOST)
        finally:
            if saved is None:
                os.environ.pop("LAB_STATE_DIR", None)
            else:
                os.environ["LAB_STATE_DIR"] = saved


JWT_TASK = """
- name: Rotate on the API's host
  hosts: all
  gather_facts: false
  tasks:
    - name: Rotate the JWT signing secret, reload the unit
      sre.runbooks.rotate_credentials:
        kind: jwt_secret
        secret_file: {config}
        format: yaml
        key: api.auth.secret_key
        previous_key: api.auth.previous_secret_keys
        reload_units: [{unit}]
        settle: 0.3
        verify_url: "{url}/models/info"
        verify_timeout: {verify_timeout}
        jwt_claims: {{sub: "{sub}"}}
        rotation_id: "{rotation_id}"
"""

API_KEY_TASK = """
- name: Rotate on the API's host
  hosts: all
  gather_facts: false
  tasks:
    - name: Replace the leaked partner key, restart the unit
      sre.runbooks.rotate_credentials:
        kind: api_key
        secret_file: {config}
        format: yaml
        key: api.auth.api_keys
        old_secret: "{{{{ leaked }}}}"
        prefix: hdk_
        new_secret_file: /root/partner-api-key.new
        restart_units: [{unit}]
        settle: 0.3
        verify_url: "{url}/models/info"
        verify_timeout: 120  # a restarted API loads its model first; polled, so a fast start costs nothing
"""


def play(api, text, *flags, **extra):
    path = api["dir"] / "play.yml"
    path.write_text(text)
    (api["dir"] / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"), PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(api["inventory"]), str(path), "-e", f"@{api['dir']}/extra.json",
                           "--diff", *flags], capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT, check=False)
    recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", re.search(r"^\S+\s+:\s+(ok=.*)$", proc.stdout, re.M).group(1))}
    return proc, recap


def main_pid():
    return hosts.run(HOST, f"systemctl show -p MainPID --value {UNIT}").stdout.strip()


def auth(api):
    return yaml.safe_load(api["config"].read_text())["api"]["auth"]


def status(api, **headers):
    return requests.get(f"{api['url']}/models/info", headers=headers, timeout=10).status_code


def bearer(secret, api):
    return {"Authorization": "Bearer " + jwt_hs256(secret, {"sub": key_id(api["api_key"])})}


def sighups(api):
    return (api["config"].parent.parent / "logs" / "api.log").read_text().count("SIGHUP received")


def test_jwt_rotation_reloads_the_unit(api):
    old = auth(api)["secret_key"]
    issued = requests.post(f"{api['url']}/auth/token", headers={"X-API-Key": api["api_key"]}, timeout=10).json()["access_token"]
    pid, config, reloads = main_pid(), api["config"].read_bytes(), sighups(api)
    fields = {"config": CONFIG, "unit": UNIT, "url": api["url"], "sub": key_id(api["api_key"]), "verify_timeout": 20, "rotation_id": "INC-5"}

    proc, recap = play(api, JWT_TASK.format(**fields), "--check")
    assert proc.returncode == 0 and recap["changed"] == 1, proc.stdout[-3000:]
    assert api["config"].read_bytes() == config and main_pid() == pid and sighups(api) == reloads
    assert "secret fp" in proc.stdout and "then: systemctl reload heart-disease-api.service" in proc.stdout  # --diff

    proc, recap = play(api, JWT_TASK.format(**fields))
    assert proc.returncode == 0 and recap["changed"] == 1, proc.stdout[-3000:]
    new = auth(api)
    assert new["secret_key"] != old and new["previous_secret_keys"][0] == old
    assert main_pid() == pid and sighups(api) == reloads + 1  # reloaded through ExecReload, not restarted
    assert status(api, **bearer(new["secret_key"], api)) == 200
    assert status(api, Authorization=f"Bearer {issued}") == 200  # issued before: still valid through previous_secret_keys

    proc, recap = play(api, JWT_TASK.format(**fields))
    assert proc.returncode == 0 and recap["changed"] == 0 and auth(api) == new, proc.stdout[-3000:]


def test_api_key_rotation_restarts_the_unit(api):
    pid, leaked = main_pid(), api["partner_key"]
    proc, recap = play(api, API_KEY_TASK.format(config=CONFIG, unit=UNIT, url=api["url"]), leaked=leaked)
    assert proc.returncode == 0 and recap["changed"] == 1, proc.stdout[-3000:]
    new_key = hosts.run(HOST, "cat /root/partner-api-key.new").stdout.strip()
    assert main_pid() not in (pid, "0") and hosts.run(HOST, f"systemctl is-active {UNIT}").stdout.strip() == "active"  # a new process
    assert auth(api)["api_keys"] == [api["api_key"], new_key]
    assert status(api, **{"X-API-Key": new_key}) == 200 and status(api, **{"X-API-Key": leaked}) == 401
    assert status(api, **{"X-API-Key": api["api_key"]}) == 200
    assert leaked not in proc.stdout and new_key not in proc.stdout
    api["partner_key"] = new_key


def test_reload_that_does_not_take_rolls_back(api):
    """The unit's reload does nothing (ExecReload=/bin/true): the new secret is never live, so the rotation is undone."""
    hosts.run(HOST, f"mkdir -p /etc/systemd/system/{UNIT}.d")
    hosts.write_file(HOST, f"/etc/systemd/system/{UNIT}.d/50-noop-reload.conf", "[Service]\nExecReload=\nExecReload=/bin/true\n")
    hosts.run(HOST, "systemctl daemon-reload")
    try:
        old, config, pid = auth(api)["secret_key"], api["config"].read_bytes(), main_pid()
        fields = {"config": CONFIG, "unit": UNIT, "url": api["url"], "sub": key_id(api["api_key"]), "verify_timeout": 2,
                  "rotation_id": "INC-6"}
        proc, recap = play(api, JWT_TASK.format(**fields))
        assert proc.returncode != 0 and recap["failed"] == 1, proc.stdout[-3000:]
        result = json.loads(re.search(r"FAILED! => (\{.*\})$", proc.stdout, re.M).group(1))
        assert result["rolled_back"] is True and result["old_secret_works"] is True and result["changed"] is False
        assert "rolled back: put back" in " ".join(result["steps"]) and result["msg"].startswith("verify_url:")
        assert api["config"].read_bytes() == config and main_pid() == pid
        assert status(api, **bearer(old, api)) == 200  # the old secret still works
        assert not (api["config"].parent / "config.yaml.rotation.json").exists() or "INC-6" not in (
            api["config"].parent / "config.yaml.rotation.json").read_text()
    finally:
        hosts.run(HOST, f"rm -rf /etc/systemd/system/{UNIT}.d && systemctl daemon-reload")
