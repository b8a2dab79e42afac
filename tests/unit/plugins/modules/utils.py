"""Helpers to run a module's main() in-process, community.general style."""

from __future__ import annotations

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class AnsibleExitJson(Exception):
    """Raised by exit_json so the test can read the result."""


class AnsibleFailJson(Exception):
    """Raised by fail_json so the test can read the failure."""


def _exit_json(module, **kwargs):  # pylint: disable=unused-argument
    kwargs.setdefault("changed", False)
    raise AnsibleExitJson(kwargs)


def _fail_json(module, **kwargs):  # pylint: disable=unused-argument
    kwargs["failed"] = True
    raise AnsibleFailJson(kwargs)


def run_module(monkeypatch, module_main, args: dict):
    """Run ``module_main`` with ``args``; return (result, failed)."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)
    with patch_module_args(args):
        try:
            module_main()
        except AnsibleExitJson as exc:
            return exc.args[0], False
        except AnsibleFailJson as exc:
            return exc.args[0], True
    raise AssertionError("module returned without exit_json/fail_json")
