"""Helpers to run a module's main() in-process, community.general style."""

from __future__ import annotations

import json
from contextlib import contextmanager

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


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


@contextmanager
def set_module_args(args: dict):
    """Feed ``args`` to the next AnsibleModule created (ansible-core 2.19 profile-aware)."""
    args = dict(args)
    args.setdefault("_ansible_remote_tmp", "/tmp")
    args.setdefault("_ansible_keep_remote_files", False)
    serialized = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    old = basic._ANSIBLE_ARGS  # pylint: disable=protected-access
    basic._ANSIBLE_ARGS = serialized  # pylint: disable=protected-access
    try:
        yield
    finally:
        basic._ANSIBLE_ARGS = old  # pylint: disable=protected-access


def run_module(monkeypatch, module_main, args: dict):
    """Run ``module_main`` with ``args``; return (result, failed)."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)
    with set_module_args(args):
        try:
            module_main()
        except AnsibleExitJson as exc:
            return exc.args[0], False
        except AnsibleFailJson as exc:
            return exc.args[0], True
    raise AssertionError("module returned without exit_json/fail_json")
