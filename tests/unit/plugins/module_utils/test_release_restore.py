"""release action=restore: archives made by the lab's own backup code (lab/heart_disease/versions.py), verified before switching."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _release as rel
from ansible_collections.sre.runbooks.plugins.modules import release as release_module
from lab.heart_disease import versions
from lab.heart_disease.common import VERSION_FILES, Home
from tests.unit.plugins.modules.utils import run_module

METRICS = {"accuracy": 0.86, "roc_auc": 0.91, "f1": 0.84}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (backups excluded) with its sha256: the whole live state."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "backups" not in p.parts}


def write_version_files(root: Path, tag: str) -> None:
    for relative in VERSION_FILES:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{tag}:{relative}:".encode() * 100)


@pytest.fixture(name="home")
def home_fixture(tmp_path):
    """A Heart Disease home with two backed-up versions; the newer (``new``) is live."""
    root = tmp_path / "heart-disease"
    home = Home.of(root)
    src_old, src_new = tmp_path / "src-old", tmp_path / "src-new"
    write_version_files(src_old, "old")
    write_version_files(src_new, "new")
    old = versions.create_backup(home, src_old, METRICS, created_at=datetime(2026, 11, 20, 2, tzinfo=timezone.utc))
    new = versions.create_backup(home, src_new, METRICS, created_at=datetime(2026, 11, 22, 2, tzinfo=timezone.utc))
    versions.install(home, new)
    return {"root": root, "old": old, "new": new, "backups": root / "backups"}


def rewrite_archive(source: Path, target: Path, change) -> None:
    """Copy a tar.gz member by member, letting ``change(name, data)`` alter content (None drops the member)."""
    with tarfile.open(source, "r:gz") as tar_in, tarfile.open(target, "w:gz") as tar_out:
        for member in tar_in.getmembers():
            data = tar_in.extractfile(member).read()
            data = change(member.name, data)
            if data is None:
                continue
            member.size = len(data)
            tar_out.addfile(member, io.BytesIO(data))


def restore(monkeypatch, home, check=False, **args):
    full = {"path": str(home["root"]), "layout": "files", "action": "restore", "backup_dir": str(home["backups"]),
            "_ansible_check_mode": check, "_ansible_diff": True}
    full.update(args)
    return run_module(monkeypatch, release_module.main, full)


def test_files_restore_check_mode_diff_and_idempotence(monkeypatch, home):
    before = snapshot(home["root"])
    preview, failed = restore(monkeypatch, home, check=True, version=home["old"])
    assert not failed, preview
    assert preview["changed"] is True and preview["previous_version"] == home["new"] and preview["version"] == home["old"]
    assert snapshot(home["root"]) == before
    assert f"version: {home['new']}" in preview["diff"]["before"] and f"version: {home['old']}" in preview["diff"]["after"]

    result, failed = restore(monkeypatch, home, version=home["old"])
    assert not failed, result
    assert result["changed"] is True and result["manifest"]["metrics"] == METRICS
    assert versions.current_version(Home.of(home["root"])) == home["old"]
    assert versions.verify_live(Home.of(home["root"])) == {}  # the lab's own check agrees
    assert not list(home["root"].glob(".restore_*"))

    again, failed = restore(monkeypatch, home, version=home["old"])
    assert not failed and again["changed"] is False

    list_args = {"path": str(home["root"]), "layout": "files", "backup_dir": str(home["backups"])}
    listed, failed = run_module(monkeypatch, release_module.main, list_args)
    assert not failed and listed["current"] == home["old"]
    assert [b["version"] for b in listed["backups"]] == [home["old"], home["new"]]
    assert listed["backups"][0]["metrics"] == METRICS


@pytest.mark.parametrize("corruption", ["flipped byte", "truncated", "unlisted member", "missing file", "unsafe path", "not json"])
def test_corrupt_archive_leaves_live_version_untouched(monkeypatch, home, corruption):
    archive = versions.archive_path(Home.of(home["root"]), home["old"])
    original = archive.with_suffix(".orig")
    os.replace(archive, original)
    model = VERSION_FILES[0]
    if corruption == "flipped byte":
        rewrite_archive(original, archive, lambda name, data: (bytes([data[0] ^ 1]) + data[1:]) if name == model else data)
    elif corruption == "truncated":
        payload = original.read_bytes()
        archive.write_bytes(payload[: len(payload) // 2])
    elif corruption == "missing file":
        rewrite_archive(original, archive, lambda name, data: None if name == model else data)
    elif corruption == "not json":
        rewrite_archive(original, archive, lambda name, data: b"{broken" if name == "manifest.json" else data)
    else:
        extra = "models/extra.bin" if corruption == "unlisted member" else "../escape.bin"
        rewrite_archive(original, archive, lambda name, data: data)
        with tarfile.open(archive, "r:gz") as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        with tarfile.open(archive, "w:gz") as tar:
            for member, data in members:
                tar.addfile(member, io.BytesIO(data))
            info = tarfile.TarInfo(extra)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    before = snapshot(home["root"])
    for check in (True, False):
        result, failed = restore(monkeypatch, home, check=check, version=home["old"])
        assert failed, result
        assert result["msg"].startswith("archive:"), result["msg"]
    assert snapshot(home["root"]) == before
    assert versions.current_version(Home.of(home["root"])) == home["new"]
    assert not list(home["root"].glob(".restore_*"))


def test_failure_midway_puts_previous_files_back(monkeypatch, home):
    before = snapshot(home["root"])
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src, dst):
        if ".restore_" in str(src) and ".previous" not in str(src):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(rel.os, "replace", failing_replace)
    archive = str(versions.archive_path(Home.of(home["root"]), home["old"]))
    with pytest.raises(OSError):
        rel.restore_files(archive, str(home["root"]), "models/VERSION")
    monkeypatch.setattr(rel.os, "replace", real_replace)
    assert calls["n"] == 2
    assert snapshot(home["root"]) == before
    assert versions.verify_live(Home.of(home["root"])) == {}


def killed_midway(home, version: str) -> None:
    """A restore of VERSION killed (as by SIGKILL: no cleanup runs) right after its second file was renamed into place."""
    archive = str(versions.archive_path(Home.of(home["root"]), version))
    pid = os.fork()
    if pid == 0:
        real_replace, renamed = os.replace, []

        def dying_replace(src, dst):
            real_replace(src, dst)
            if ".restore_" in str(src) and ".previous" not in str(src):
                renamed.append(dst)
                if len(renamed) == 2:
                    os._exit(9)  # pylint: disable=protected-access

        rel.os.replace = dying_replace
        try:
            rel.restore_files(archive, str(home["root"]), "models/VERSION")
        finally:
            os._exit(0)  # pylint: disable=protected-access
    assert os.waitpid(pid, 0)[1] >> 8 == 9, "the restore was not killed part-way"


@pytest.mark.parametrize("next_version", ["same", "other"])
def test_a_restore_killed_between_renames_is_completed_by_the_next(monkeypatch, home, next_version):
    killed_midway(home, home["old"])
    live = Home.of(home["root"])
    assert (home["root"] / rel.RESTORE_JOURNAL).is_file()
    assert versions.verify_live(live) != {}  # a mix of the two versions: what the journal is there to repair
    listed, failed = run_module(monkeypatch, release_module.main, {"path": str(home["root"]), "layout": "files"})
    assert not failed and listed["interrupted_restore"] == home["old"]

    before = snapshot(home["root"])
    target = home["old"] if next_version == "same" else home["new"]
    preview, failed = restore(monkeypatch, home, check=True, version=target)
    assert not failed and preview["changed"] is True and preview["completed_interrupted"] == home["old"]
    assert snapshot(home["root"]) == before  # check mode completes nothing

    result, failed = restore(monkeypatch, home, version=target)
    assert not failed, result
    assert result["completed_interrupted"] == home["old"] and result["changed"] is True
    assert result["previous_version"] == home["old"]  # the interrupted restore was completed first
    assert versions.current_version(live) == target and versions.verify_live(live) == {}
    assert not list(home["root"].glob(".restore_*")) and not (home["root"] / rel.RESTORE_JOURNAL).exists()
    again, failed = restore(monkeypatch, home, version=target)
    assert not failed and again["changed"] is False and "completed_interrupted" not in again


def test_an_unreadable_journal_is_named_and_nothing_changes(monkeypatch, home):
    (home["root"] / rel.RESTORE_JOURNAL).write_text("{broken")
    before = snapshot(home["root"])
    result, failed = restore(monkeypatch, home, version=home["old"])
    assert failed and rel.RESTORE_JOURNAL in result["msg"] and "unreadable" in result["msg"]
    assert snapshot(home["root"]) == before


def test_version_mismatch_and_unknown_version(monkeypatch, home):
    before = snapshot(home["root"])
    archive = versions.archive_path(Home.of(home["root"]), home["old"])
    result, failed = restore(monkeypatch, home, backup_dir=None, archive=str(archive), version=home["new"])
    assert failed and result["msg"].startswith("version: asked for")
    result, failed = restore(monkeypatch, home, version="19990101T000000Z")
    assert failed and result["msg"].startswith("version: no backup backup_19990101T000000Z.tar.gz")
    assert snapshot(home["root"]) == before


def make_release_archive(path: Path, version: str, files: dict[str, bytes], manifest_extra: dict | None = None) -> Path:
    manifest = {"version": version, "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    manifest.update(manifest_extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {**files, "manifest.json": json.dumps(manifest).encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_releases_layout_restore_swaps_link_and_rejects_corruption(monkeypatch, tmp_path):
    releases = tmp_path / "releases"
    (releases / "v1.4.2").mkdir(parents=True)
    (releases / "v1.4.2" / "app.py").write_text("broken = True\n")
    os.symlink("v1.4.2", releases / "current")
    good = make_release_archive(tmp_path / "v1.4.1.tar.gz", "v1.4.1", {"app.py": b"ok = True\n", "static/app.js": b"1;"})

    args = {"path": str(releases), "action": "restore", "archive": str(good), "_ansible_diff": True}
    preview, failed = run_module(monkeypatch, release_module.main, {**args, "_ansible_check_mode": True})
    assert not failed and preview["changed"] is True
    assert preview["diff"] == {"before": "current -> v1.4.2\n", "after": "current -> v1.4.1\n"}
    assert not (releases / "v1.4.1").exists() and os.readlink(releases / "current") == "v1.4.2"

    result, failed = run_module(monkeypatch, release_module.main, args)
    assert not failed, result
    assert os.readlink(releases / "current") == "v1.4.1"
    assert (releases / "current" / "static" / "app.js").read_bytes() == b"1;"
    again, failed = run_module(monkeypatch, release_module.main, args)
    assert not failed and again["changed"] is False

    # Back to v1.4.2, then a corrupted v1.4.0 archive: the current link must not move and no directory appear.
    rel.switch(str(releases), "v1.4.2")
    bad = make_release_archive(tmp_path / "v1.4.0.tar.gz", "v1.4.0", {"app.py": b"old = True\n"})
    payload = bytearray(gzip.decompress(bad.read_bytes()))
    payload[payload.index(b"old = True")] ^= 0x20
    bad.write_bytes(gzip.compress(bytes(payload)))
    result, failed = run_module(monkeypatch, release_module.main, {**args, "archive": str(bad)})
    assert failed and "sha256 mismatch for app.py" in result["msg"]
    assert os.readlink(releases / "current") == "v1.4.2"
    assert sorted(p.name for p in releases.iterdir()) == ["current", "v1.4.1", "v1.4.2"]


def test_bad_archive_pattern_and_layout_action(monkeypatch, tmp_path):
    bad_pattern = {"path": str(tmp_path), "backup_dir": str(tmp_path), "archive_pattern": "backup.tar.gz"}
    result, failed = run_module(monkeypatch, release_module.main, bad_pattern)
    assert failed and result["msg"].startswith("archive_pattern:")
    result, failed = run_module(monkeypatch, release_module.main, {"path": str(tmp_path), "layout": "files", "action": "rollback"})
    assert failed and result["msg"].startswith("layout:")
