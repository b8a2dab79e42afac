"""The HighErrorRate tests read what converge left and use the lab harness (molecule/shared/harness.py) for one more run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from harness import *  # noqa: E402,F401,F403  pylint: disable=wildcard-import,unused-wildcard-import,wrong-import-position

testinfra_hosts = ["local://"]
