"""Releases with a current symlink: listing, switching, rolling back."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils import _release as rel
from ansible_collections.sre.runbooks.plugins.modules import release as release_module
from tests.unit.plugins.modules.utils import run_module


@pytest.fixture(name="releases")
def releases_fixture(tmp_path):
    for version, deployed in (("v1.4.0", "2026-11-20T10:00:00+00:00"), ("v1.4.1", "2026-11-21T10:00:00+00:00"),
                              ("v1.4.2", "2026-11-23T09:00:00+00:00")):
        (tmp_path / version).mkdir()
        (tmp_path / version / "release.json").write_text(json.dumps({"version": version, "deployed_at": deployed}))
    os.symlink("v1.4.2", tmp_path / "current")
    return tmp_path


def test_list(releases):
    state = rel.list_releases(str(releases))
    assert [r["name"] for r in state["releases"]] == ["v1.4.0", "v1.4.1", "v1.4.2"]
    assert (state["current"], state["previous"]) == ("v1.4.2", "v1.4.1")
    assert state["deployed_at"] == "2026-11-23T09:00:00+00:00"
    assert state["dangling"] is False
    assert state["current_since"] is not None


def test_missing_dir_names_path(tmp_path):
    with pytest.raises(rel.ReleaseError, match="^path: releases directory"):
        rel.list_releases(str(tmp_path / "nope"))


def test_current_not_a_link(tmp_path):
    (tmp_path / "current").mkdir()
    with pytest.raises(rel.ReleaseError, match="^current_link:"):
        rel.list_releases(str(tmp_path))


def test_rollback_is_atomic_and_idempotent_with_from_version(releases):
    result = rel.switch(str(releases), None, rollback=True, from_version="v1.4.2")
    assert result["changed"] and os.readlink(releases / "current") == "v1.4.1"
    again = rel.switch(str(releases), None, rollback=True, from_version="v1.4.2")
    assert again["changed"] is False and os.readlink(releases / "current") == "v1.4.1"
    assert not [p for p in os.listdir(releases) if p.startswith(".")]


def test_check_mode_changes_nothing(releases):
    result = rel.switch(str(releases), "v1.4.0", check_mode=True)
    assert result["changed"] and result["current"] == "v1.4.0"
    assert os.readlink(releases / "current") == "v1.4.2"


def test_switch_unknown_version_lists_known(releases):
    with pytest.raises(rel.ReleaseError, match=r"^version: no release 'v9' .*known: v1.4.0, v1.4.1, v1.4.2"):
        rel.switch(str(releases), "v9")


def test_rollback_without_previous(tmp_path):
    (tmp_path / "only").mkdir()
    os.symlink("only", tmp_path / "current")
    with pytest.raises(rel.ReleaseError, match="^action: no release before only"):
        rel.switch(str(tmp_path), None, rollback=True)


def test_module_diff_and_check(monkeypatch, releases):
    result, failed = run_module(monkeypatch, release_module.main, {
        "path": str(releases), "action": "switch", "version": "v1.4.1", "_ansible_check_mode": True, "_ansible_diff": True})
    assert not failed and result["changed"]
    assert result["diff"] == {"before": "current -> v1.4.2\n", "after": "current -> v1.4.1\n"}
    assert os.readlink(releases / "current") == "v1.4.2"
    result, failed = run_module(monkeypatch, release_module.main, {"path": str(releases), "action": "switch", "version": "v1.4.2"})
    assert not failed and result["changed"] is False and "diff" not in result


def test_module_switch_requires_version(monkeypatch, releases):
    result, failed = run_module(monkeypatch, release_module.main, {"path": str(releases), "action": "switch"})
    assert failed and "version" in result["msg"]
