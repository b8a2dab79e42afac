"""The incident directory's disk full (a 256 KiB tmpfs, filled).

Full before the run: the run fails at its first task, the message names the directory and the cause, and no incident
directory is left behind. Full in the middle of a run: the run fails at its next write with the same message, and the
record on disk is whole (valid JSON, the last update that fitted). Space freed, a rerun joins that incident and
completes it."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Iterator

from conftest import Runs


@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "256k") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; returns the filler file (remove it to free the space)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: nothing left to flush (and fail) at close
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 1024)
    return filler


def records(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def test_disk_full(tmp_path):
    runs = Runs(tmp_path)
    with tiny_disk(runs.incidents) as disk:
        filler = fill(disk)
        full = runs.run("initial_assessment.yml")
        assert not full.ok
        assert f"cannot write the incident record in {disk}/" in full.output and "No space left on device" in full.output, \
            full.output[-3000:]
        assert records(disk) == []  # no directory without a record
        failed_task = full.output.split("fatal:")[0].rsplit("TASK [", 1)[1]
        assert failed_task.startswith("sre.runbooks.incident : Open or join the incident"), failed_task[:200]

        filler.unlink()
        background = runs.start("initial_assessment.yml")
        background.wait_for_output("TASK [sre.runbooks.ml_triage")  # the incident is open, the hosts are being checked
        filler = fill(disk)
        mid = background.wait()
        assert not mid.ok
        assert f"cannot write the incident record in {disk}/" in mid.output and "No space left on device" in mid.output
        (opened,) = records(disk)
        record = json.loads((opened / "incident.json").read_text())  # whole: the last update that fitted
        assert record["alert_name"] == "InitialAssessment" and record["status"] != "resolved"
        assert not [p for p in opened.iterdir() if p.name.startswith(".incident.json.")]  # no temporary left

        filler.unlink()
        rerun = runs.run("initial_assessment.yml")
        assert rerun.ok, rerun.output[-4000:]
        assert rerun.record["id"] == record["id"]  # joined the interrupted incident
        assert len(rerun.record["runs"]) == 2 and rerun.record.get("decision")
