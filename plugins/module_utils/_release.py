# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Releases kept side by side in one directory, with a ``current`` symlink naming the live one.

This is the layout of the apps' deployments (``releases/<version>/`` + ``releases/current``);
model versions and backup archives follow the same idea.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from ansible_collections.sre.runbooks.plugins.module_utils._files import atomic_write as write_file_atomically

METADATA_FILES = ("release.json", "manifest.json")


class ReleaseError(Exception):
    """The releases directory is missing or inconsistent."""


def _metadata(release_dir: Path) -> dict[str, Any]:
    for name in METADATA_FILES:
        path = release_dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                return {"metadata_error": f"{path.name}: {exc}"}
            return data if isinstance(data, dict) else {}
    return {}


def list_releases(releases_dir: str, current_link: str = "current") -> dict[str, Any]:
    """All releases oldest first, which one is current, and the one before it (the rollback target)."""
    root = Path(releases_dir)
    if not root.is_dir():
        raise ReleaseError(f"path: releases directory {releases_dir} does not exist or is not a directory")
    link = root / current_link
    current = None
    current_since = None
    if link.is_symlink():
        current = Path(os.readlink(link)).name
        # The link's own mtime is when the release became current again after a rollback or re-deploy.
        current_since = datetime.fromtimestamp(link.lstat().st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
    elif link.exists():
        raise ReleaseError(f"current_link: {link} exists but is not a symlink")
    releases = []
    for entry in root.iterdir():
        if entry.name == current_link or entry.name.startswith(".") or not entry.is_dir():
            continue
        meta = _metadata(entry)
        deployed_at = meta.get("deployed_at") or datetime.fromtimestamp(entry.stat().st_mtime, tz=timezone.utc).isoformat()
        releases.append({
            "version": str(meta.get("version") or entry.name),
            "name": entry.name,
            "path": str(entry),
            "deployed_at": deployed_at,
            "commit": meta.get("commit"),
            "current": entry.name == current,
            **({"metadata_error": meta["metadata_error"]} if "metadata_error" in meta else {}),
        })
    releases.sort(key=lambda r: (r["deployed_at"], r["name"]))
    names = [r["name"] for r in releases]
    previous = None
    if current in names:
        index = names.index(current)
        previous = names[index - 1] if index > 0 else None
    current_release = next((r for r in releases if r["current"]), None)
    return {
        "releases": releases,
        "current": current,
        "previous": previous,
        "deployed_at": current_release["deployed_at"] if current_release else None,
        "current_since": current_since,
        "dangling": current is not None and current not in names,
    }


def _swap_link(root: Path, current_link: str, target_name: str) -> None:
    """Point ``current_link`` at ``target_name`` with one rename: there is never a moment without a current release."""
    tmp = root / f".{current_link}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target_name, tmp)
    try:
        os.replace(tmp, root / current_link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def switch(releases_dir: str, version: str | None, current_link: str = "current", rollback: bool = False,
           from_version: str | None = None, check_mode: bool = False) -> dict[str, Any]:
    """Make ``version`` current (or, with ``rollback``, the release before the current one).

    A rollback with ``from_version`` only acts while that release is current, which makes it
    safe to repeat: the second run finds the release already rolled back and changes nothing.
    """
    state = list_releases(releases_dir, current_link)
    by_name = {r["name"]: r for r in state["releases"]}
    by_version = {r["version"]: r for r in state["releases"]}
    before = state["current"]
    if rollback:
        if from_version is not None and before not in (from_version, by_version.get(from_version, {}).get("name")):
            return {"changed": False, "current": before, "previous_current": before,
                    "msg": f"{from_version} is not current ({before}); nothing to roll back", "diff": {"before": before, "after": before}}
        if state["previous"] is None:
            raise ReleaseError(f"action: no release before {before} to roll back to")
        target = state["previous"]
    else:
        if not version:
            raise ReleaseError("version: required for action=switch")
        release = by_name.get(version) or by_version.get(version)
        if release is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise ReleaseError(f"version: no release {version!r} in {releases_dir} (known: {known})")
        target = release["name"]
    changed = target != before
    if changed and not check_mode:
        _swap_link(Path(releases_dir), current_link, target)
    return {"changed": changed, "current": target, "previous_current": before,
            "msg": f"current release {'would be' if check_mode else 'is'} {target} (was {before})" if changed else f"{target} already current",
            "diff": {"before": f"{current_link} -> {before}\n", "after": f"{current_link} -> {target}\n"}}


# -- restore from a backup archive ------------------------------------------------------------------

MANIFEST = "manifest.json"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sha256_stream(handle) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 16), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return _sha256_stream(handle)


def _safe_relative(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts and not any(p in ("", ".") for p in parts[1:])


def read_archive(archive: str) -> dict[str, Any]:
    """Open a backup archive and check it completely, in memory, without extracting anything.

    Returns the manifest; raises ReleaseError naming the first problem: unreadable archive, no or bad
    manifest, a member that is not a plain file at a safe relative path or that the manifest does not
    list, a listed file missing, or a file whose sha256 differs from the manifest.
    """
    path = Path(archive)
    if not path.is_file():
        raise ReleaseError(f"archive: {archive} does not exist or is not a file")
    try:
        with tarfile.open(path, "r:*") as tar:
            try:
                member = tar.getmember(MANIFEST)
            except KeyError:
                raise ReleaseError(f"archive: {archive} has no {MANIFEST}") from None
            handle = tar.extractfile(member)
            try:
                manifest = json.load(handle) if handle else None
            except ValueError as exc:
                raise ReleaseError(f"archive: {archive}: {MANIFEST} is not valid JSON: {exc}") from None
            if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or not manifest["files"]:
                raise ReleaseError(f"archive: {archive}: {MANIFEST} has no 'files' mapping of path to sha256")
            expected = {}
            for name, digest in manifest["files"].items():
                digest = str(digest).lower().removeprefix("sha256:")
                if not _safe_relative(name) or name == MANIFEST:
                    raise ReleaseError(f"archive: {archive}: {MANIFEST} lists an unsafe path {name!r}")
                if not _HEX64.match(digest):
                    raise ReleaseError(f"archive: {archive}: {MANIFEST} gives {name} a hash that is not a sha256 hex digest")
                expected[name] = digest
            seen: dict[str, str] = {}
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                if name == MANIFEST or (member.isdir() and _safe_relative(name)):
                    continue
                if not member.isfile() or not _safe_relative(name):
                    raise ReleaseError(f"archive: {archive}: member {member.name!r} is not a plain file at a safe relative path")
                if name not in expected:
                    raise ReleaseError(f"archive: {archive}: member {name} is not listed in {MANIFEST}")
                if name in seen:
                    raise ReleaseError(f"archive: {archive}: member {name} appears twice")
                seen[name] = _sha256_stream(tar.extractfile(member))
    except tarfile.TarError as exc:
        raise ReleaseError(f"archive: {archive} is not a readable tar archive: {exc}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise ReleaseError(f"archive: {archive} is truncated or corrupt: {exc}") from None
    missing = sorted(set(expected) - set(seen))
    if missing:
        raise ReleaseError(f"archive: {archive}: files listed in {MANIFEST} are missing: {', '.join(missing)}")
    bad = sorted(name for name in expected if seen[name] != expected[name])
    if bad:
        raise ReleaseError(f"archive: {archive}: sha256 mismatch for {', '.join(bad)}; nothing was changed")
    manifest["files"] = expected
    return manifest


def find_archive(backup_dir: str, version: str, pattern: str = "backup_{version}.tar.gz") -> str:
    path = Path(backup_dir) / pattern.format(version=version)
    if not path.is_file():
        known = sorted(p.name for p in Path(backup_dir).glob(pattern.format(version="*"))) if Path(backup_dir).is_dir() else []
        raise ReleaseError(f"version: no backup {path.name} in {backup_dir} (found: {', '.join(known) or 'none'})")
    return str(path)


def list_backups(backup_dir: str, pattern: str = "backup_{version}.tar.gz") -> list[dict[str, Any]]:
    """Backup archives oldest first with the version, creation time and metrics their manifest gives (not hash-checked)."""
    root = Path(backup_dir)
    if not root.is_dir():
        raise ReleaseError(f"backup_dir: {backup_dir} does not exist or is not a directory")
    prefix, _sep, suffix = pattern.partition("{version}")
    found = []
    for path in sorted(root.glob(pattern.format(version="*"))):
        entry: dict[str, Any] = {"version": path.name[len(prefix):len(path.name) - len(suffix)], "archive": str(path),
                                 "size": path.stat().st_size}
        try:
            with tarfile.open(path, "r:*") as tar:
                handle = tar.extractfile(MANIFEST)
                manifest = json.load(handle) if handle else {}
            entry.update({key: manifest.get(key) for key in ("created_at", "metrics") if key in manifest})
        except (tarfile.TarError, KeyError, ValueError, OSError, EOFError, zlib.error) as exc:
            entry["error"] = f"unreadable: {exc}"
        found.append(entry)
    return found


def _read_version_file(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    write_file_atomically(path, text, mode)


def _live_hashes(root: Path, names) -> dict[str, str | None]:
    return {name: (sha256_file(root / name) if (root / name).is_file() else None) for name in names}


def _diff_text(version: str | None, hashes: dict[str, str | None]) -> str:
    lines = [f"version: {version}"] + [f"{name}: {digest or '(missing)'}" for name, digest in sorted(hashes.items())]
    return "\n".join(lines) + "\n"


def _extract_verified(archive: str, manifest: dict[str, Any], staging: Path) -> None:
    """Extract the listed files into ``staging`` and check every hash again on disk (what will be renamed into place)."""
    with tarfile.open(archive, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.removeprefix("./") in manifest["files"]]
        try:
            tar.extractall(staging, members=members, filter="data")
        except TypeError:  # Python before 3.11.4 (Debian bookworm: 3.11.2) has no filter; the members are
            # already checked to be plain files at safe relative paths (read_archive)
            tar.extractall(staging, members=members)  # nosec B202
    for name, expected in manifest["files"].items():
        actual = sha256_file(staging / name) if (staging / name).is_file() else None
        if actual != expected:
            raise ReleaseError(f"archive: {archive}: {name} extracted with sha256 {actual}, manifest says {expected}; nothing was changed")


def _check_expected(manifest: dict[str, Any], archive: str, expected_version: str | None) -> None:
    if expected_version is not None and str(manifest.get("version")) != expected_version:
        raise ReleaseError(f"version: asked for {expected_version} but {archive}'s manifest says {manifest.get('version')}; nothing was changed")


RESTORE_JOURNAL = ".restore-journal.json"


def interrupted_restore(root: str) -> str | None:
    """The version of a layout=files restore that was killed part-way under ``root`` (its journal is still there)."""
    journal = _read_journal(Path(root))
    return str(journal["version"]) if journal else None


def _read_journal(home: Path) -> dict[str, Any] | None:
    try:
        journal = json.loads((home / RESTORE_JOURNAL).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"path: {home / RESTORE_JOURNAL} (an interrupted restore's journal) is unreadable: {exc}; "
                           "check the files under the path by hand") from None
    staging = str(journal.get("staging", ""))
    if not staging.startswith(".restore_") or "/" in staging or not isinstance(journal.get("files"), dict):
        raise ReleaseError(f"path: {home / RESTORE_JOURNAL} is not a restore journal written by this module")
    return journal


def _drop_journal(home: Path, journal: dict[str, Any]) -> None:
    (home / RESTORE_JOURNAL).unlink()
    shutil.rmtree(home / journal["staging"], ignore_errors=True)


def _finish_interrupted(home: Path, version_file: str, journal: dict[str, Any]) -> bool:
    """Complete a restore that was killed between its first and last rename, so the files are one version again.

    Its staging directory still holds the verified files not yet renamed into place: rename them (each hash checked
    once more), write the version file, then drop the journal and the staging directory. False when the staging
    directory can no longer complete it (the journal is dropped; the restore being run puts every file in place)."""
    staging = home / journal["staging"]
    for name, expected in sorted(journal["files"].items()):
        staged = staging / name
        if staged.is_file():
            if sha256_file(staged) != expected:
                raise ReleaseError(f"path: the interrupted restore of {journal['version']} left {name} in {staging} with a "
                                   "hash its manifest does not have; restore again from the archive")
            (home / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, home / name)
        elif not (home / name).is_file() or sha256_file(home / name) != expected:
            _drop_journal(home, journal)
            return False
    _atomic_write(home / version_file, f"{journal['version']}\n")
    _drop_journal(home, journal)
    return True


def restore_files(archive: str, root: str, version_file: str, check_mode: bool = False,
                  expected_version: str | None = None) -> dict[str, Any]:
    """Put an archive's files in place under ``root`` (the Heart Disease layout) and write ``version_file`` last.

    Every hash is verified before anything is replaced; each file is renamed into place atomically; if any
    rename fails, the files already replaced are put back from hard links of the previous ones, so the
    previous version stays whole. A run killed between the renames leaves a journal: the next restore first
    completes that one (``completed_interrupted``), so the files are never left as a mix of two versions.
    """
    manifest = read_archive(archive)
    _check_expected(manifest, archive, expected_version)
    version = str(manifest.get("version") or Path(archive).name)
    home = Path(root)
    if not home.is_dir():
        raise ReleaseError(f"path: {root} does not exist or is not a directory")
    journal = _read_journal(home)
    # check mode reports the interrupted restore it would complete; a real run only the one it did complete
    pending = journal["version"] if journal and (check_mode or _finish_interrupted(home, version_file, journal)) else None
    marker = home / version_file
    before_version = _read_version_file(marker)
    before = _live_hashes(home, manifest["files"])
    changed = before_version != version or any(before[name] != digest for name, digest in manifest["files"].items())
    result = {"changed": changed, "version": version, "previous_version": before_version, "archive": archive,
              "files": sorted(manifest["files"]), "manifest": {k: v for k, v in manifest.items() if k != "files"},
              "diff": {"before": _diff_text(before_version, before), "after": _diff_text(version, manifest["files"])}}
    result["msg"] = (f"{version} {'would be' if check_mode else 'was'} restored (was {before_version})" if changed
                     else f"{version} already live and identical to its manifest")
    if pending:
        result["completed_interrupted"] = str(pending)
        result["msg"] = (f"the interrupted restore of {pending} {'would be' if check_mode else 'was'} completed first; "
                         + result["msg"])
        result["changed"] = True
    if not changed or check_mode:
        return result
    staging = Path(tempfile.mkdtemp(dir=home, prefix=".restore_"))
    try:
        _extract_verified(archive, manifest, staging)
        previous = staging / ".previous"
        replaced: list[str] = []
        # from the first rename to the version file, a kill would leave a mix of versions: the journal lets the next
        # run finish this one (the staging directory holds the verified files not yet renamed)
        journal = {"version": version, "staging": staging.name, "files": manifest["files"]}
        _atomic_write(home / RESTORE_JOURNAL, json.dumps(journal) + "\n", 0o600)
        try:
            for name in sorted(manifest["files"]):
                target = home / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_file():
                    (previous / name).parent.mkdir(parents=True, exist_ok=True)
                    os.link(target, previous / name)
                os.replace(staging / name, target)
                replaced.append(name)
            _atomic_write(marker, version + "\n")
        except BaseException:
            for name in reversed(replaced):
                if (previous / name).is_file():
                    os.replace(previous / name, home / name)
                else:
                    (home / name).unlink(missing_ok=True)
            raise
        finally:
            # after the version file (done) or the put-back (undone): nothing is left to complete
            (home / RESTORE_JOURNAL).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def restore_release(archive: str, releases_dir: str, current_link: str = "current", check_mode: bool = False,
                    expected_version: str | None = None) -> dict[str, Any]:
    """Unpack a verified archive as ``releases_dir/<version>`` and swap the current link to it."""
    manifest = read_archive(archive)
    _check_expected(manifest, archive, expected_version)
    version = str(manifest.get("version") or "")
    if not version or not _safe_relative(version) or "/" in version or version == current_link or version.startswith("."):
        raise ReleaseError(f"archive: {archive}: {MANIFEST} has no usable 'version' to name the release directory")
    root = Path(releases_dir)
    state = list_releases(releases_dir, current_link)
    target = root / version
    before_version = state["current"]
    result = {"version": version, "previous_version": before_version, "archive": archive, "files": sorted(manifest["files"]),
              "manifest": {k: v for k, v in manifest.items() if k != "files"}}
    if target.exists():
        live = _live_hashes(target, manifest["files"])
        if live != manifest["files"]:
            raise ReleaseError(f"version: {target} already exists and its files differ from the archive's manifest; "
                               "move it away or restore under another version")
    changed = before_version != version
    result.update({"changed": changed,
                   "diff": {"before": f"{current_link} -> {before_version}\n", "after": f"{current_link} -> {version}\n"},
                   "msg": (f"{version} {'would be' if check_mode else 'was'} restored and made current (was {before_version})"
                           if changed else f"{version} already current and identical to its manifest")})
    if not changed or check_mode:
        return result
    if not target.exists():
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".restore_{version}_"))
        try:
            _extract_verified(archive, manifest, staging)
            os.chmod(staging, 0o755)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _swap_link(root, current_link, version)
    return result


def read_version(root: str, version_file: str) -> str | None:
    """The live version named by ``version_file`` under ``root`` (layout=files)."""
    return _read_version_file(Path(root) / version_file)
