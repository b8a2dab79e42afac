"""A release rollback killed part-way (HighErrorRate's resolution step 2 on app1: sre.runbooks.release action=rollback,
playbook ../playbooks/rollback_release.yml): the run and its module in app1 are SIGKILLed as the rollback starts.
While it runs and after the kill, ``current`` always names a complete release (its release.json readable) and the
backend answers; a rerun completes the rollback and a further run changes nothing."""

from __future__ import annotations

import json
import secrets
import shutil
import threading
from pathlib import Path

from conftest import LAB_STATE, REPO, app_health, interrupt, lab, wait_until

RELEASES = LAB_STATE / "hosts" / "app1" / "srv" / "releases"
PLAYBOOK = str(REPO / "molecule" / "faults" / "playbooks" / "rollback_release.yml")


def current_release() -> str:
    """The version ``current`` names, after checking the release it names is complete."""
    target = RELEASES / Path(RELEASES / "current").readlink()
    return json.loads((target / "release.json").read_text())["version"]


class Watcher(threading.Thread):
    """Reads ``current`` every few milliseconds; keeps every version seen and every moment it was not complete."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: set[str] = set()
        self.broken: list[str] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.seen.add(current_release())
            except (OSError, ValueError, KeyError) as exc:
                self.broken.append(repr(exc))
            self.stop.wait(0.005)


def test_interrupted_rollback(runs):
    before = current_release()
    bad = f"v1.5.{secrets.randbelow(10 ** 6)}"  # a version no earlier run left behind
    lab("deploy", bad, "--hosts", "app1")
    watcher = Watcher()
    try:
        assert current_release() == bad
        watcher.start()
        background = runs.start(PLAYBOOK, faults_from_version=bad)
        background.wait_for_output("TASK [Roll back the correlated deployment]")
        interrupt(background, "app1")
        assert background.wait().proc.returncode != 0
        assert current_release() in (bad, before)
        wait_until(lambda: app_health("app1").get("version") == current_release(), "app1 serving the release current names")

        rerun = runs.run(PLAYBOOK, faults_from_version=bad)
        assert rerun.ok, rerun.output[-4000:]
        assert current_release() == before
        wait_until(lambda: app_health("app1").get("version") == before, f"app1 serving {before} again")
        again = runs.run(PLAYBOOK, faults_from_version=bad)
        assert again.ok and again.recap["app1"]["changed"] == 0, again.output[-3000:]
    finally:
        watcher.stop.set()
        if watcher.is_alive():
            watcher.join(5)
        if current_release() != before:
            lab("rollback", "--to", before, "--hosts", "app1")
        shutil.rmtree(RELEASES / bad, ignore_errors=True)
    assert watcher.broken == [], watcher.broken[:5]
    assert watcher.seen <= {bad, before}
