"""The triage filters as playbooks call them: input checks and result shapes."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sre.runbooks.plugins.filter.triage import FilterModule

FILTERS = FilterModule().filters()


def test_filters_registered():
    assert {"error_pattern", "deploy_correlation", "error_onset", "merge_error_groups", "fleet_evidence"} <= set(FILTERS)


@pytest.mark.parametrize("name, arg", [("error_pattern", "not a list"), ("deploy_correlation", {"a": 1}),
                                       ("merge_error_groups", None), ("fleet_evidence", "x")])
def test_wrong_input_type_is_named(name, arg):
    with pytest.raises(AnsibleFilterError, match=f"^{name}: expected a list"):
        if name == "deploy_correlation":
            FILTERS[name](arg, "2026-11-23T09:00:00Z")
        else:
            FILTERS[name](arg)


def test_onset_from_range_result_and_fallback():
    history = {"series": [{"values": [["t1", 0.0], ["t2", 0.4], ["t3", 0.5]]}]}
    assert FILTERS["error_onset"](history, 0.05) == "t2"
    groups = [{"first_seen": "2026-11-23T09:02:00Z"}, {"first_seen": "2026-11-23T09:01:00Z"}]
    assert FILTERS["error_onset"]({"series": []}, 0.05, groups) == "2026-11-23T09:01:00Z"
    assert FILTERS["error_onset"]({}, 0.05, []) is None
