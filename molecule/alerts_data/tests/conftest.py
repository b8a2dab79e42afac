"""The alert tests share the lab harness (molecule/shared/harness.py): fault(), wait_for_value(), runbook, ..."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from harness import *  # noqa: E402,F401,F403  pylint: disable=wildcard-import,unused-wildcard-import,wrong-import-position

testinfra_hosts = ["local://"]
