# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the Heart Disease runbook's security procedures (see module_utils/_ml_security.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.sre.runbooks.plugins.module_utils._ml_security import exposed_secrets, suspicious_networks


def _exposed_secrets(auth, files, key_id_length=12):
    try:
        return exposed_secrets(auth, files, int(key_id_length))
    except (ValueError, TypeError) as exc:
        raise AnsibleFilterError(f"ml_exposed_secrets: {exc}") from exc


def _suspicious_networks(failures_by_ip, leaked_use_by_ip=None, trusted=(), prefix_v4=24, prefix_v6=64, min_failures=5):
    try:
        return suspicious_networks(failures_by_ip, leaked_use_by_ip, trusted, int(prefix_v4), int(prefix_v6), int(min_failures))
    except (ValueError, TypeError) as exc:
        raise AnsibleFilterError(f"ml_suspicious_networks: {exc}") from exc


class FilterModule:
    """sre.runbooks Heart Disease security filters: leaked secrets and the networks to block."""

    def filters(self):
        return {
            "ml_exposed_secrets": _exposed_secrets,
            "ml_suspicious_networks": _suspicious_networks,
        }
