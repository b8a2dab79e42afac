# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the secrets sweep's ``-vvv`` costs a runbook run, and what the sweep itself costs.

Usage (a running lab; the runs investigate only, remediation off, so the lab is left as it was)::

    LAB_STATE_DIR=/tmp/lab-x LAB_PORT_OFFSET=600 .venv/bin/python benchmarks/verbose_runs.py \\
        [--playbook high_error_rate.yml --playbook model_issues.yml] [--repeat 2] [--callback default] [--pretty]

Each playbook is run ``--repeat`` times with and without ``-vvv`` (alternating, so the lab's load drifts alike on
both), as molecule/shared/harness.py runs it (same ansible.cfg, collections, short monitoring window). Printed: the
median wall time of each, the ratio, the output's size, and the time ``harness.secret_leaks`` takes to search it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("RUNBOOK_INCIDENT_DIR", tempfile.mkdtemp(prefix="verbose-runs-"))
Path(os.environ["RUNBOOK_INCIDENT_DIR"]).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("MOLECULE_PROJECT_DIRECTORY", str(REPO))
sys.path.insert(0, str(REPO / "molecule" / "shared"))
import harness  # noqa: E402  pylint: disable=wrong-import-position,import-error


def run(playbook: str, verbose: bool, incidents: Path, callback: str | None, pretty: bool) -> tuple[float, str]:
    extra = incidents / f"extra-{time.monotonic_ns()}.json"
    extra.write_text(json.dumps({"runbook_remediate": False, "runbook_incident_dir": str(incidents), "runbook_poll_seconds": 5,
                                 "runbook_monitor_minutes": 0.5, "runbook_escalate_after_minutes": 2}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")}
    if callback:
        env["ANSIBLE_STDOUT_CALLBACK"] = callback
    if verbose and not pretty:
        env["ANSIBLE_CALLBACK_FORMAT_PRETTY"] = "false"  # as the harness runs it
    argv = [str(harness.BIN / "ansible-playbook"), *(["-vvv"] if verbose else []), "-i", str(REPO / "inventories" / "lab"),
            "-e", f"@{extra}", str(REPO / "playbooks" / playbook)]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    return time.monotonic() - started, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--playbook", action="append", help="playbooks/NAME (repeatable)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--callback", help="ANSIBLE_STDOUT_CALLBACK for both runs (default: ansible.cfg's)")
    parser.add_argument("--pretty", action="store_true", help="-vvv's indented results (the harness turns them off)")
    args = parser.parse_args()
    for playbook in args.playbook or ["high_error_rate.yml", "model_issues.yml"]:
        times: dict[bool, list[float]] = {False: [], True: []}
        sizes: dict[bool, int] = {}
        sweep = []
        for _round in range(args.repeat):
            for verbose in (False, True):
                incidents = Path(tempfile.mkdtemp(prefix="incidents-", dir=os.environ["RUNBOOK_INCIDENT_DIR"]))
                seconds, output = run(playbook, verbose, incidents, args.callback, args.pretty)
                times[verbose].append(seconds)
                sizes[verbose] = len(output)
                if verbose:
                    started = time.monotonic()
                    leaks = harness.secret_leaks({"output": output}, incidents, 0)
                    sweep.append(time.monotonic() - started)
                    if leaks:
                        print(f"  LEAK: {leaks}")
        plain, loud = statistics.median(times[False]), statistics.median(times[True])
        print(f"{playbook}: plain {plain:.1f} s ({sizes[False] / 1024:.0f} KiB output), -vvv {loud:.1f} s "
              f"({sizes[True] / 1024:.0f} KiB), +{(loud / plain - 1) * 100:.0f} %; sweep of {len(harness.SECRETS_SEEN)} secrets "
              f"{statistics.median(sweep) * 1000:.0f} ms; runs {[round(t, 1) for t in times[False]]} / {[round(t, 1) for t in times[True]]}")


if __name__ == "__main__":
    main()
