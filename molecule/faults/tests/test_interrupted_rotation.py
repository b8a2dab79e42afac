"""A credential rotation killed part-way (Security Recovery's step on ml1: sre.runbooks.rotate_credentials, playbook
../playbooks/rotate_api_key.yml): the run and its module in the host are SIGKILLed once the new key is in the
configuration and before the old one is removed. The API keeps accepting a key its holder has, the untouched key
keeps working, the configuration is whole; a rerun with a fresh key (as Security Recovery makes one per run) completes
the rotation and drops the interrupted run's key, which nobody was given."""

from __future__ import annotations

import json
import secrets

import requests
import yaml

from conftest import LAB_STATE, PORT_OFFSET, REPO, in_host, interrupt, wait_until

HOME = LAB_STATE / "hosts" / "ml1" / "heart-disease"
CONFIG = HOME / "config" / "config.yaml"
REPLACEMENT = HOME / "config" / "rotated" / "faults.replacement"
PLAYBOOK = str(REPO / "molecule" / "faults" / "playbooks" / "rotate_api_key.yml")


def status(key: str) -> int:
    return requests.get(f"http://127.0.0.1:{18101 + PORT_OFFSET}/models/info", headers={"X-API-Key": key}, timeout=10).status_code


def keys() -> list[str]:
    return yaml.safe_load(CONFIG.read_text())["api"]["auth"]["api_keys"]


def test_interrupted_rotation(runs):
    original = CONFIG.read_bytes()
    old, other = keys()[0], keys()[1]
    first, second = "hdk_" + secrets.token_hex(18), "hdk_" + secrets.token_hex(18)
    rotation = {"faults_old_key": old, "faults_rotation_id": f"faults-{secrets.token_hex(4)}"}
    try:
        background = runs.start(PLAYBOOK, faults_new_key=first, **rotation)
        wait_until(lambda: first in CONFIG.read_text(), "the new key written to the configuration", timeout=240, interval=0.02)
        interrupt(background, "ml1")
        killed = background.wait()
        assert killed.proc.returncode != 0

        configured = keys()  # whole YAML, the key list readable
        assert old in configured and other in configured
        assert status(old) == 200 and status(other) == 200  # the holders' keys keep working
        state = json.loads((CONFIG.parent / "config.yaml.rotation.json").read_text())
        assert state["status"] == "pending"

        rerun = runs.run(PLAYBOOK, faults_new_key=second, **rotation)
        assert rerun.ok, rerun.output[-4000:]
        assert keys() == [other, second]
        assert status(second) == 200 and status(other) == 200
        assert status(old) == 401 and status(first) == 401  # retired, and the interrupted run's key dropped
        assert REPLACEMENT.read_text().strip() == second
    finally:
        CONFIG.write_bytes(original)
        (CONFIG.parent / "config.yaml.rotation.json").unlink(missing_ok=True)
        REPLACEMENT.unlink(missing_ok=True)
        in_host("ml1", "systemctl reload heart-disease-api")
        wait_until(lambda: status(old) == 200, "the ML API back on its original keys")
