"""Helpers of the Heart Disease service and security tests: unit states, HTTP calls from a chosen source address."""

from __future__ import annotations

import subprocess

import yaml

from harness import LAB_STATE, PORT_OFFSET, lab_ssh

HOME = LAB_STATE / "hosts" / "ml1" / "heart-disease"
API_URL = f"http://127.0.0.1:{18101 + PORT_OFFSET}"
WORKER_URL = f"http://127.0.0.1:{18102 + PORT_OFFSET}"
API_UNIT = "heart-disease-api"
WORKER_UNIT = "heart-disease-worker"


def unit_state(unit: str) -> str:
    """``systemctl is-active`` of a unit in ml1 (active, failed, inactive, ...)."""
    return lab_ssh("ml1", f"systemctl is-active {unit} || true").strip()


def units() -> dict[str, str]:
    return {unit: unit_state(unit) for unit in (API_UNIT, WORKER_UNIT)}


def status(path: str, key: str | None = None, source: str | None = None, url: str = API_URL) -> int:
    """HTTP status of GET URL+PATH, with an API key and from a source address (any 127.0.0.0/8 one is local)."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--noproxy", "*"]
    if source:
        argv += ["--interface", source]
    if key:
        argv += ["-H", f"X-API-Key: {key}"]
    proc = subprocess.run(argv + [url + path], capture_output=True, text=True, timeout=20, check=False)
    return int(proc.stdout or 0)


def api_keys() -> list[str]:
    return list(yaml.safe_load((HOME / "config" / "config.yaml").read_text())["api"]["auth"]["api_keys"])


def security_state() -> dict[str, object]:
    """What a security remediation would change: the keys, the denylist, the public files, the quarantine."""
    denylist = HOME / "config" / "denylist.json"
    return {"keys": api_keys(), "denylist": denylist.read_text() if denylist.exists() else None,
            "public": sorted(p.name for p in (HOME / "public").iterdir()),
            "quarantine": sorted(p.name for p in (HOME / "quarantine").iterdir()) if (HOME / "quarantine").is_dir() else []}
