# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files written so that a reader sees the old or the new content, never half of one, and never with the wrong mode."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union


def atomic_write(path: Union[str, Path], content: Union[str, bytes], mode: int = 0o644, owner: int = -1, group: int = -1) -> None:
    """Write ``content`` to ``path`` through a temporary file in the same directory and a rename.

    Mode and owner are set on the temporary file before the first byte, so a secret is never readable by
    anyone it should not be, even for a moment; the data is flushed to disk before the rename.
    """
    target = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=str(target.parent), prefix=f".{target.name}.")
    try:
        os.fchmod(fd, mode)
        if owner != -1 or group != -1:
            os.fchown(fd, owner, group)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
