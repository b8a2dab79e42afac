# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn gathered evidence into the runbooks' decisions."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.sre.runbooks.plugins.module_utils._triage import (
    classify_errors,
    deployment_correlation,
    error_label,
    error_onset,
    fleet_evidence,
    merge_error_groups,
)


def _error_pattern(groups, patterns=None):
    if not isinstance(groups, list):
        raise AnsibleFilterError(f"error_pattern: expected a list of error groups, got {type(groups).__name__}")
    return classify_errors(groups, patterns)


def _deploy_correlation(deployments, onset, window_minutes=120, grace_minutes=1):
    if not isinstance(deployments, list):
        raise AnsibleFilterError(f"deploy_correlation: expected a list of deployments, got {type(deployments).__name__}")
    try:
        return deployment_correlation(deployments, onset, float(window_minutes), float(grace_minutes))
    except ValueError as exc:
        raise AnsibleFilterError(f"deploy_correlation: {exc}") from exc


def _error_onset(history, threshold=0.05, groups=None):
    """Onset from a prometheus_query range result (or a list of points); else the earliest error in ``groups``."""
    points = history
    if isinstance(history, dict):
        series = history.get("series") or []
        points = series[0].get("values", []) if series else []
    seen = sorted(g["first_seen"] for g in groups or [] if isinstance(g, dict) and g.get("first_seen"))
    onset = error_onset(points or [], float(threshold), seen)
    if onset is None and seen:
        onset = seen[0]
    return onset


def _merge_error_groups(per_host, top=10):
    if not isinstance(per_host, list):
        raise AnsibleFilterError(f"merge_error_groups: expected a list of {{host, groups}}, got {type(per_host).__name__}")
    return merge_error_groups(per_host, int(top))


def _fleet_evidence(evidence, top=10):
    if not isinstance(evidence, list):
        raise AnsibleFilterError(f"fleet_evidence: expected a list of {{host, errors, deployments}}, got {type(evidence).__name__}")
    return fleet_evidence(evidence, int(top))


class FilterModule:
    """sre.runbooks triage filters."""

    def filters(self):
        return {
            "error_pattern": _error_pattern,
            "deploy_correlation": _deploy_correlation,
            "error_onset": _error_onset,
            "merge_error_groups": _merge_error_groups,
            "fleet_evidence": _fleet_evidence,
            "error_label": error_label,
        }
