"""model_recovery.yml -e model_version=<v>: exactly that version, hashes verified first.

An unknown version and an archive whose hashes do not match fail the run, naming the problem, with the live
model untouched; a known version is restored, reloaded and validated, and a rerun changes nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from conftest import HOME, backups, live_version, manifest_files, model_state, served_version

TAMPERED = "20000102T000000Z"


def _tampered_archive() -> None:
    """A backup whose model file does not match its manifest's sha256 (a corrupted backup)."""
    payload = b"not the model the manifest describes"
    manifest = {"version": TAMPERED, "files": {"models/sklearn_mlp_model.joblib": hashlib.sha256(b"other").hexdigest()},
                "metrics": {"accuracy": 0.9, "roc_auc": 0.95, "f1": 0.9}}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("manifest.json", json.dumps(manifest).encode()), ("models/sklearn_mlp_model.joblib", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (HOME / "backups" / f"backup_{TAMPERED}.tar.gz").write_bytes(gzip.compress(buffer.getvalue()))


def test_model_recovery_exact_version(runbook):
    live = live_version()
    older = [v for v in backups() if v < live][0]
    before = model_state()

    unknown = runbook("model_recovery.yml", remediate=True, model_version="20000101T000000Z")
    assert not unknown.ok and "no backup backup_20000101T000000Z.tar.gz" in unknown.output
    assert model_state() == before and served_version() == live

    _tampered_archive()
    try:
        tampered = runbook("model_recovery.yml", remediate=True, model_version=TAMPERED)
        assert not tampered.ok and "sha256 mismatch" in tampered.output
        assert live_version() == live and model_state()["files"] == before["files"] and served_version() == live
    finally:
        (HOME / "backups" / f"backup_{TAMPERED}.tar.gz").unlink()

    run = runbook("model_recovery.yml", remediate=True, model_version=older)
    assert run.ok, run.output[-3000:]
    assert live_version() == older == served_version()
    assert model_state()["files"] == manifest_files(older)
    assert run.decision["restore_version"] == older and run.record["status"] == "resolved"
    assert all(run.decision["validated_metrics"][k] >= v for k, v in {"accuracy": 0.8, "roc_auc": 0.85, "f1": 0.75}.items())

    rerun = runbook("model_recovery.yml", remediate=True, model_version=older)
    assert rerun.ok and rerun.actions == [] and not rerun.fleet_changed

    back = runbook("model_recovery.yml", remediate=True, model_version=live)
    assert back.ok and live_version() == live == served_version()
