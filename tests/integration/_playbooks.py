"""Run a runbook playbook with ansible-playbook the way an on-call engineer (or AWX) does, and read its incident record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def local_host(**host_vars: Any) -> dict[str, Any]:
    """Inventory variables of a host the playbook reaches on this machine, with this interpreter."""
    return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}


def run_playbook(tmp_path: Path, playbook: str, inventory: dict[str, Any], **extra: Any) -> tuple[subprocess.CompletedProcess, dict]:
    """``ansible-playbook -i <inventory> -e @<extra> playbooks/<playbook>``; returns the process and the newest incident record.

    Records go to ``tmp_path/incidents``; a second call with the same ``tmp_path`` sees the first's records (joins).
    """
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    # The remediation locks too (sre.runbooks.remediation_lock): a test's runs never wait for another test's on this machine.
    variables = {"runbook_incident_dir": str(tmp_path / "incidents"), "remediation_lock_path": str(tmp_path / "locks"),
                 "ansible_python_interpreter": sys.executable, **extra}
    (tmp_path / "extra.json").write_text(json.dumps(variables))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "ANSIBLE_HOME": str(tmp_path / "ansible-home")}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.json"),
            "-e", f"@{tmp_path / 'extra.json'}", str(REPO / "playbooks" / playbook)]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    records = sorted((tmp_path / "incidents").glob("*/incident.json"), key=lambda p: p.stat().st_mtime)
    return proc, (json.loads(records[-1].read_text()) if records else {})
