# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the resource runbooks (SlowResponseTime, HighCPUUsage, LowMemory): alert hosts and the decisions."""

from __future__ import annotations

from ansible_collections.sre.runbooks.plugins.module_utils._resources import (
    alert_hosts,
    by_host,
    host_values,
    cpu_verdict,
    memory_verdict,
    slow_verdict,
)


class FilterModule:
    """Resource runbook decisions."""

    def filters(self):
        return {"alert_hosts": alert_hosts, "by_host": by_host, "host_values": host_values, "cpu_verdict": cpu_verdict, "memory_verdict": memory_verdict,
                "slow_verdict": slow_verdict}
