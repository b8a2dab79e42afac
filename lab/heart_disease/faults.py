"""Faults the lab induces in an installation, and how each is switched off.

    python -m lab.heart_disease.faults NAME on|off --home DIR [--full] [--mode MODE]
    python -m lab.heart_disease.faults status --home DIR

``on`` induces the fault the way it would happen for real. ``off`` only undoes what no runbook would
fix (the lab's own levers: injected latency, drifted traffic, the public leak); what a runbook is meant
to repair (a failed unit, a bad or corrupted model, a leaked key still valid) is left for the runbook,
unless ``--full`` asks the lab to repair it too (to reset the lab between scenarios).

State is kept in ``.lab/faults.json`` (read by ``lab.heart_disease.traffic``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import joblib
import numpy as np

from . import build, dataset, modeling, traffic, versions
from .common import MODEL_FILE, Home, load_config, new_api_key, running_pid, sha256_file, write_config, write_json


class FaultError(RuntimeError):
    """A fault cannot be switched as asked (unknown name, service not running, no good version…)."""


# -- state --------------------------------------------------------------------------------------
def state_path(home: Home):
    return home.lab_state / "faults.json"


def read_state(home: Home) -> dict:
    try:
        return json.loads(state_path(home).read_text())
    except (OSError, ValueError):
        return {}


def _set_state(home: Home, name: str, on: bool, **details) -> dict:
    state = read_state(home)
    entry = {"on": on, "changed_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")}
    if on:
        entry.update(details)
    else:
        # keep what off needs later (e.g. the leaked key) but mark the fault off
        entry.update({key: value for key, value in state.get(name, {}).items() if key not in ("on", "changed_at")})
        entry.update(details)
    state[name] = entry
    home.lab_state.mkdir(parents=True, exist_ok=True)
    write_json(state_path(home), state, mode=0o600)
    return entry


# -- helpers ------------------------------------------------------------------------------------
def signal_service(home: Home, service: str, signum: int) -> int | None:
    """Send ``signum`` to the running service (by its pid file, checked against /proc); returns the pid."""
    pid = running_pid(home, service)
    if pid is not None:
        os.kill(pid, signum)
    return pid


def reload_api(home: Home) -> bool:
    """What ``systemctl reload heart-disease-api`` does (ExecReload sends SIGHUP)."""
    pid = signal_service(home, "api", signal.SIGHUP)
    if pid is not None:
        time.sleep(0.3)  # let the event loop run the reload before callers look
    return pid is not None


def wait_exit(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            # a zombie (our own child, not reaped yet) has exited too
            with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
                if handle.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def _traffic(home: Home, send: Callable, *args, **kwargs):
    try:
        return send(*args, **kwargs)
    except OSError as exc:
        raise FaultError(f"the API at {traffic.api_url(home)} is not reachable ({exc}); the fault flag is set and "
                         "lab.heart_disease.traffic will follow it") from exc


def last_good_version(home: Home, exclude: set[str]) -> str:
    """The newest version whose manifest metrics clear the quality floor."""
    for version in reversed(versions.list_versions(home)):
        if version in exclude:
            continue
        if not modeling.below_floor(versions.read_manifest(home, version)["metrics"]):
            return version
    raise FaultError("no version in backups/ clears the quality floor")


# -- the faults ---------------------------------------------------------------------------------
def crash_api_on(home: Home, **_) -> dict:
    pid = signal_service(home, "api", signal.SIGUSR2)
    if pid is None:
        raise FaultError("the API is not running (no live pid in run/api.pid)")
    exited = wait_exit(pid)
    return _set_state(home, "crash_api", True, pid=pid, exited=exited)


def fail_worker_on(home: Home, **_) -> dict:
    pid = signal_service(home, "worker", signal.SIGUSR2)
    if pid is None:
        raise FaultError("the worker is not running (no live pid in run/worker.pid)")
    exited = wait_exit(pid)
    return _set_state(home, "fail_worker", True, pid=pid, exited=exited)


def service_off(name: str) -> Callable[..., dict]:
    def off(home: Home, **_) -> dict:
        # Starting the unit again is the runbook's job (service recovery); the lab only forgets the fault.
        return _set_state(home, name, False)
    return off


def bad_model_on(home: Home, **_) -> dict:
    """Deploy a version trained on shuffled labels: a real archive, manifest and live files, honest metrics."""
    previous = versions.current_version(home)
    data = build.splits()
    version, metrics = build.train_version(home, data, seed=7, created_at=datetime.now(timezone.utc),
                                           label_permutation_seed=99, check_floor=False)
    versions.install(home, version)
    reloaded = reload_api(home)
    return _set_state(home, "bad_model", True, version=version, previous_version=previous, metrics=metrics,
                      api_reloaded=reloaded)


def bad_model_off(home: Home, full: bool = False, **_) -> dict:
    entry = read_state(home).get("bad_model", {})
    details = {}
    if full and entry.get("version"):
        bad = entry["version"]
        if versions.current_version(home) == bad:
            good = last_good_version(home, exclude={bad})
            versions.install(home, good)
            details["restored_version"] = good
            details["api_reloaded"] = reload_api(home)
        versions.delete(home, bad)
        details["deleted_version"] = bad
    return _set_state(home, "bad_model", False, **details)


def corrupt_model_on(home: Home, mode: str = "truncate", **_) -> dict:
    """Change the live model file's bytes: ``truncate`` (loading fails) or ``weights`` (loads, predicts garbage)."""
    path = home.path(MODEL_FILE)
    before = sha256_file(path)
    if mode == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif mode == "weights":
        model = joblib.load(path)
        rng = np.random.default_rng(5)
        model.coefs_ = [layer * rng.normal(0, 4, layer.shape) for layer in model.coefs_]
        joblib.dump(model, path)
    else:
        raise FaultError(f"corrupt_model mode must be truncate or weights, not {mode!r}")
    reloaded = reload_api(home)
    return _set_state(home, "corrupt_model", True, mode=mode, version=versions.current_version(home),
                      sha256_before=before, sha256_after=sha256_file(path), api_reloaded=reloaded)


def corrupt_model_off(home: Home, full: bool = False, **_) -> dict:
    entry = read_state(home).get("corrupt_model", {})
    details = {}
    if full and entry.get("version") and versions.verify_live(home, entry["version"]):
        versions.install(home, entry["version"])
        details["restored_version"] = entry["version"]
        details["api_reloaded"] = reload_api(home)
    return _set_state(home, "corrupt_model", False, **details)


def drift_on(home: Home, burst: int = 200, **_) -> dict:
    # flag first: a running traffic generator switches to drifted inputs at once
    _set_state(home, "drift", True, shifts=dict(dataset.DRIFT_SHIFT))
    scored = _traffic(home, traffic.send_batch, home, burst, drift=True, seed=int(time.time()))
    return _set_state(home, "drift", True, shifts=dict(dataset.DRIFT_SHIFT), burst_scored=scored)


def drift_off(home: Home, burst: int = 200, **_) -> dict:
    _set_state(home, "drift", False)
    # inputs back to normal: enough normal traffic to refill the worker's monitoring window
    scored = _traffic(home, traffic.send_batch, home, burst, drift=False, seed=int(time.time()))
    return _set_state(home, "drift", False, normal_burst_scored=scored)


def leaked_credential_on(home: Home, valid_requests: int = 40, invalid_requests: int = 30, **_) -> dict:
    keys = load_config(home)["api"]["auth"]["api_keys"]
    leaked = keys[-1]  # the partner-integration key, not the one the normal client uses
    home.public.mkdir(parents=True, exist_ok=True)
    leak = home.public / "leaked.txt"
    leak.write_text(
        "# heart-disease partner integration - DO NOT SHARE\n"
        f"HEART_API_URL={traffic.api_url(home)}\n"
        f"HEART_API_KEY={leaked}\n"
    )
    leak.chmod(0o644)
    _set_state(home, "leaked_credential", True, key=leaked, leak_file=str(leak))
    statuses = _traffic(home, traffic.spray, home, leaked, valid_requests, invalid_requests, seed=int(time.time()))
    return _set_state(home, "leaked_credential", True, key=leaked, leak_file=str(leak),
                      source_network=f"{traffic.ATTACKER_NETWORK}0/24", spray=statuses)


def leaked_credential_off(home: Home, full: bool = False, **_) -> dict:
    entry = read_state(home).get("leaked_credential", {})
    (home.public / "leaked.txt").unlink(missing_ok=True)
    details = {}
    if full and entry.get("key"):
        config = load_config(home)
        keys = config["api"]["auth"]["api_keys"]
        if entry["key"] in keys:
            keys[keys.index(entry["key"])] = new_api_key()
            write_config(home, config)
            details["rotated"] = True
            details["api_reloaded"] = reload_api(home)
    return _set_state(home, "leaked_credential", False, **details)


def latency_on(home: Home, delay_seconds: float = 1.2, jitter_seconds: float = 0.6, **_) -> dict:
    write_json(home.lab_state / "latency.json", {"delay_seconds": delay_seconds, "jitter_seconds": jitter_seconds})
    return _set_state(home, "latency", True, delay_seconds=delay_seconds, jitter_seconds=jitter_seconds)


def latency_off(home: Home, **_) -> dict:
    (home.lab_state / "latency.json").unlink(missing_ok=True)
    return _set_state(home, "latency", False)


@dataclass(frozen=True)
class Fault:
    on: Callable[..., dict]
    off: Callable[..., dict]
    fixed_by: str  # who ends the incident: a runbook procedure, or the lab's ``off``


FAULTS = {
    "crash_api": Fault(crash_api_on, service_off("crash_api"),
                       "runbook: service disruption / service recovery (restart heart-disease-api)"),
    "fail_worker": Fault(fail_worker_on, service_off("fail_worker"),
                         "runbook: service disruption / service recovery (restart heart-disease-worker)"),
    "bad_model": Fault(bad_model_on, bad_model_off,
                       "runbook: model issues / model recovery (restore the last good version)"),
    "corrupt_model": Fault(corrupt_model_on, corrupt_model_off,
                           "runbook: model issues / model recovery (restore the live version from its backup)"),
    "drift": Fault(drift_on, drift_off, "lab off (the runbook detects and reports input drift; it cannot fix inputs)"),
    "leaked_credential": Fault(leaked_credential_on, leaked_credential_off,
                               "runbook: security incident / security recovery (rotate the key, block 127.66.6.0/24); "
                               "lab off removes the public leak"),
    "latency": Fault(latency_on, latency_off, "lab off (the runbook diagnoses the slow /predict)"),
}


def apply(home: Home | str, name: str, on: bool, **options) -> dict:
    """Switch fault ``name`` on or off; returns what was done (the fault's state entry)."""
    home = home if isinstance(home, Home) else Home.of(home)
    if name not in FAULTS:
        raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    fault = FAULTS[name]
    return (fault.on if on else fault.off)(home, **options)


def reset(home: Home | str) -> dict:
    """Every fault off, including the runbooks' part: back to the built good state (processes aside)."""
    home = home if isinstance(home, Home) else Home.of(home)
    state = read_state(home)
    return {name: apply(home, name, False, full=True) for name in FAULTS if state.get(name, {}).get("on")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.heart_disease.faults", description=__doc__.splitlines()[0])
    parser.add_argument("name", help=f"one of {', '.join(FAULTS)}, or 'status' / 'reset'")
    parser.add_argument("state", nargs="?", choices=("on", "off"))
    parser.add_argument("--home", required=True)
    parser.add_argument("--full", action="store_true", help="with off: also repair what the runbook would repair")
    parser.add_argument("--mode", default="truncate", help="corrupt_model: truncate (load fails) or weights (garbage)")
    args = parser.parse_args(argv)
    home = Home.of(args.home)
    try:
        if args.name == "status":
            result = {"faults": read_state(home), "fixed_by": {name: fault.fixed_by for name, fault in FAULTS.items()}}
        elif args.name == "reset":
            result = reset(home)
        elif args.state is None:
            parser.error("give on or off")
        else:
            options = {"full": args.full} if args.state == "off" else {}
            if args.name == "corrupt_model" and args.state == "on":
                options["mode"] = args.mode
            result = apply(home, args.name, args.state == "on", **options)
    except (FaultError, versions.VersionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
