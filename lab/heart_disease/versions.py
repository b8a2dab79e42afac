"""Model versions, which exist only as backups: ``backups/backup_<version>.tar.gz`` with a manifest.

A version id is its UTC creation time, ``YYYYmmddTHHMMSSZ``, so names sort by age. Each archive holds
the version's files under their paths relative to the home directory plus ``manifest.json``::

    {"version": ..., "created_at": ISO-8601, "files": {relative path: sha256},
     "metrics": {"accuracy": ..., "roc_auc": ..., "f1": ...}, ...}

``models/VERSION`` names the version whose files are live. ``install`` is the reference for what a
restore does: extract to a staging directory, check every hash, then rename each file into place and
write VERSION last.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .common import KEEP_BACKUPS, VERSION_FILES, Home, atomic_write, sha256_file

VERSION_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "manifest.json"


class VersionError(RuntimeError):
    """A version is unknown, its archive is unreadable, or its files do not match the manifest."""


def archive_path(home: Home, version: str) -> Path:
    return home.backups / f"backup_{version}.tar.gz"


def list_versions(home: Home) -> list[str]:
    """Version ids that have a backup archive, oldest first."""
    if not home.backups.is_dir():
        return []
    names = [path.name for path in home.backups.glob("backup_*.tar.gz")]
    return sorted(name[len("backup_"):-len(".tar.gz")] for name in names)


def current_version(home: Home) -> str | None:
    try:
        return home.version_file.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def read_manifest(home: Home, version: str) -> dict:
    path = archive_path(home, version)
    try:
        with tarfile.open(path, "r:gz") as archive:
            member = archive.extractfile(MANIFEST)
            if member is None:
                raise VersionError(f"{path} has no {MANIFEST}")
            return json.load(member)
    except FileNotFoundError as exc:
        raise VersionError(f"version {version} has no backup {path}") from exc
    except (tarfile.TarError, KeyError, json.JSONDecodeError, OSError) as exc:
        raise VersionError(f"backup {path} is unreadable: {exc}") from exc


def _unique_version(home: Home, created_at: datetime) -> tuple[str, datetime]:
    existing = set(list_versions(home))
    created_at = created_at.astimezone(timezone.utc).replace(microsecond=0)
    while created_at.strftime(VERSION_FORMAT) in existing:
        created_at += timedelta(seconds=1)
    return created_at.strftime(VERSION_FORMAT), created_at


def create_backup(home: Home, source_root: Path, metrics: dict, created_at: datetime | None = None,
                  extra: dict | None = None, keep: int = KEEP_BACKUPS) -> str:
    """Archive the version files found under ``source_root`` as a new version; returns its id."""
    version, created_at = _unique_version(home, created_at or datetime.now(timezone.utc))
    files = {relative: sha256_file(source_root / relative) for relative in VERSION_FILES}
    manifest = {
        "version": version,
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "files": files,
        "metrics": {name: metrics[name] for name in ("accuracy", "roc_auc", "f1")},
        **(extra or {}),
    }
    home.backups.mkdir(parents=True, exist_ok=True)
    target = archive_path(home, version)
    fd, tmp = tempfile.mkstemp(dir=home.backups, prefix=".backup_")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as archive:
            for relative in VERSION_FILES:
                info = archive.gettarinfo(source_root / relative, arcname=relative)
                info.mtime = int(created_at.timestamp())
                with (source_root / relative).open("rb") as handle:
                    archive.addfile(info, handle)
            payload = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(payload)
            info.mtime = int(created_at.timestamp())
            archive.addfile(info, io.BytesIO(payload))
        os.chmod(tmp, 0o640)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    os.utime(target, (created_at.timestamp(), created_at.timestamp()))
    prune(home, keep)
    return version


def prune(home: Home, keep: int = KEEP_BACKUPS) -> list[str]:
    """Delete the oldest archives beyond ``keep``, never the live version's; returns what was deleted."""
    current = current_version(home)
    versions = list_versions(home)
    removable = [version for version in versions[:-keep] if version != current] if len(versions) > keep else []
    for version in removable:
        archive_path(home, version).unlink()
    return removable


def verify_live(home: Home, version: str | None = None) -> dict:
    """Compare the live files with a version's manifest: ``{relative path: (expected, actual or None)}`` for mismatches."""
    version = version or current_version(home)
    if version is None:
        raise VersionError(f"{home.version_file} is missing: no version is marked live")
    manifest = read_manifest(home, version)
    mismatches = {}
    for relative, expected in manifest["files"].items():
        path = home.path(relative)
        actual = sha256_file(path) if path.is_file() else None
        if actual != expected:
            mismatches[relative] = (expected, actual)
    return mismatches


def install(home: Home, version: str) -> dict:
    """Make ``version`` live: all files checked against its manifest before any is replaced. Returns the manifest."""
    manifest = read_manifest(home, version)
    allowed = set(manifest["files"]) | {MANIFEST}
    staging = Path(tempfile.mkdtemp(dir=home.root, prefix=".restore_"))
    try:
        with tarfile.open(archive_path(home, version), "r:gz") as archive:
            members = archive.getmembers()
            unexpected = [member.name for member in members if member.name not in allowed or not member.isfile()]
            if unexpected:
                raise VersionError(f"backup of {version} holds unexpected members: {', '.join(unexpected)}")
            archive.extractall(staging, members=members, filter="data")
        for relative, expected in manifest["files"].items():
            actual = sha256_file(staging / relative)
            if actual != expected:
                raise VersionError(f"backup of {version}: {relative} has sha256 {actual}, manifest says {expected}")
        for relative in manifest["files"]:
            target = home.path(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / relative, target)
        atomic_write(home.version_file, version + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def delete(home: Home, version: str) -> None:
    if version == current_version(home):
        raise VersionError(f"version {version} is live; install another one before deleting it")
    archive_path(home, version).unlink(missing_ok=True)
