# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every module that talks to Prometheus."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the Prometheus server, without the C(/api/v1) path.
      - Set it once for all modules with C(module_defaults) and the C(group/sre.runbooks.prometheus) action group.
    type: str
    default: http://127.0.0.1:9090
    aliases: [prometheus_url]
  timeout:
    description: Seconds to wait for Prometheus before giving up.
    type: float
    default: 10
  validate_certs:
    description: Verify the server's TLS certificate when O(url) is https.
    type: bool
    default: true
  bearer_token:
    description: Token sent as a bearer C(Authorization) header to a Prometheus behind an authenticating proxy.
    type: str
  allow_unreachable:
    description:
      - When Prometheus cannot be reached, report that (with the reason) as the result instead of failing.
      - Runbooks set this so that a monitoring outage becomes a finding in the report, not a crashed run.
      - A query that Prometheus rejects (bad PromQL) always fails.
    type: bool
    default: false
"""
