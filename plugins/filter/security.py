# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the security runbooks' evidence into their decisions (see module_utils/_security.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.sre.runbooks.plugins.module_utils._security import (
    SecurityError,
    auth_attack,
    export_review,
    suspicious_sources,
)


def _auth_attack(per_host, protect=None, service_accounts=None, max_addresses=20, max_accounts=5, min_failures=3):
    if not isinstance(per_host, list):
        raise AnsibleFilterError(f"auth_attack: expected a list of {{host, auth}}, got {type(per_host).__name__}")
    try:
        return auth_attack(per_host, protect or [], service_accounts or [], int(max_addresses), int(max_accounts), int(min_failures))
    except SecurityError as exc:
        raise AnsibleFilterError(f"auth_attack: {exc}") from exc


def _suspicious_sources(per_host, protect=None, service_accounts=None, min_events=3, max_addresses=20, max_accounts=5, patterns=None):
    if not isinstance(per_host, list):
        raise AnsibleFilterError(f"suspicious_sources: expected a list of {{host, records}}, got {type(per_host).__name__}")
    try:
        return suspicious_sources(per_host, protect or [], service_accounts or [], int(min_events), int(max_addresses),
                                  int(max_accounts), patterns or None)
    except SecurityError as exc:
        raise AnsibleFilterError(f"suspicious_sources: {exc}") from exc


def _export_review(exports, accounts=None, policy=None):
    if not isinstance(exports, dict):
        raise AnsibleFilterError(f"export_review: expected a mapping of user id to records, got {type(exports).__name__}")
    return export_review(exports, accounts or [], policy or {})


class FilterModule:
    """sre.runbooks security filters."""

    def filters(self):
        return {
            "auth_attack": _auth_attack,
            "suspicious_sources": _suspicious_sources,
            "export_review": _export_review,
        }
