# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Releases kept side by side in one directory, with a ``current`` symlink naming the live one.

This is the layout of the apps' deployments (``releases/<version>/`` + ``releases/current``);
model versions and backup archives follow the same idea.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
