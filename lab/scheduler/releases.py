"""The deployed release: ``releases/<version>/release.json`` and a ``current`` symlink."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from loguru import logger


@dataclass(frozen=True)
class Release:
    version: str
    deployed_at: str | None = None
    commit: str | None = None
    defect: dict | None = None

    def as_dict(self) -> dict:
        return {"version": self.version, "deployed_at": self.deployed_at, "commit": self.commit, "defect": self.defect}


UNKNOWN = Release(version="unknown")


def read_release(release_dir: Path) -> Release:
    try:
        data = json.loads((release_dir / "release.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("Cannot read release manifest in {}: {}", release_dir, exc)
        return Release(version=release_dir.name)
    defect = data.get("defect")
    return Release(
        version=str(data.get("version") or release_dir.name),
        deployed_at=data.get("deployed_at"),
        commit=data.get("commit"),
        defect=defect if isinstance(defect, dict) else None,
    )


class ReleaseTracker:
    """Follows the ``current`` symlink, re-reading it at most once per ``interval`` seconds."""

    def __init__(self, current_link: Path, interval: float = 1.0, clock=time.monotonic):
        self.current_link = current_link
        self.interval = interval
        self._clock = clock
        self._checked_at = float("-inf")
        self._target: str | None = None
        self._release = UNKNOWN

    def current(self) -> Release:
        now = self._clock()
        if now - self._checked_at >= self.interval:
            self._checked_at = now
            try:
                target = os.readlink(self.current_link)
            except OSError:
                target = None
            if target != self._target:
                self._target = target
                self._release = UNKNOWN if target is None else read_release(self.current_link.parent / target)
        return self._release
