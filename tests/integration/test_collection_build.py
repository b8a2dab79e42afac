"""The collection builds into a tarball that installs and whose modules ansible-doc renders."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*argv, env=None, cwd=REPO):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=120)


def test_build_install_and_document(tmp_path):
    run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), "--force")
    tarball = next(tmp_path.glob("sre-runbooks-*.tar.gz"))
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert "plugins/modules/log_query.py" in names and "roles/incident/tasks/open.yml" in names
    assert not [n for n in names if n.startswith((".venv", ".lab", ".collections", ".build")) or "/incidents/" in n]

    install_root = tmp_path / "installed"
    # Outside the repo, with no ansible.cfg, so only the installed copy can be found.
    empty_cfg = tmp_path / "ansible.cfg"
    empty_cfg.write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(empty_cfg), "ANSIBLE_COLLECTIONS_PATH": str(install_root)}
    run(str(BIN / "ansible-galaxy"), "collection", "install", "--force", str(tarball), "-p", str(install_root), env=env, cwd=tmp_path)
    assert (install_root / "ansible_collections" / "sre" / "runbooks" / "MANIFEST.json").is_file()
    for module in ("log_query", "prometheus_query", "prometheus_watch", "release", "incident"):
        doc = run(str(BIN / "ansible-doc"), f"sre.runbooks.{module}", env=env, cwd=tmp_path).stdout
        assert f"sre.runbooks.{module}" in doc and "OPTIONS" in doc, module
