#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prometheus_watch
short_description: Verify a fix - wait for a PromQL value to recover, then watch it stay recovered
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - The runbooks' verification step ("monitor error rate for 15 minutes after fix", "escalate if it doesn't
    decrease within 30 minutes") as one task. It polls O(query) every O(interval) until the value is healthy
    (at or below O(threshold) by default), giving up after O(recover_within); then it keeps polling for
    O(hold_for) and reports a recurrence if the value turns unhealthy again.
  - The value judged is the worst series of the result. A query with no series counts as healthy
    (for an error ratio, no errors); an unreachable Prometheus never does.
  - The outcome is data, not a failure. Playbooks branch on RV(outcome) to resolve or escalate.
  - Read-only; runs the same in check mode.
extends_documentation_fragment:
  - sre.runbooks.prometheus
options:
  query:
    description: The PromQL expression, usually the alert's own expression without its comparison.
    type: str
    required: true
  threshold:
    description: The boundary between healthy and unhealthy.
    type: float
    required: true
  healthy_when:
    description: V(below) means healthy when the value is at or below O(threshold); V(above) the opposite (cache hit rate, free memory).
    type: str
    choices: [below, above]
    default: below
  recover_within:
    description: How long to wait for the value to become healthy, a duration such as V(30m).
    type: str
    default: 30m
  hold_for:
    description: How long the value must then stay healthy, a duration such as V(15m). V(0s) checks once.
    type: str
    default: 15m
  interval:
    description: Time between samples, a duration such as V(30s).
    type: str
    default: 30s
"""

EXAMPLES = r"""
- name: Monitor the error rate for 15 minutes after the fix, escalate if not down within 30
  sre.runbooks.prometheus_watch:
    url: http://127.0.0.1:9090
    query: sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))
    threshold: 0.05
    recover_within: 30m
    hold_for: 15m
  register: recovery

- name: Escalate when it did not recover
  ansible.builtin.debug:
    msg: Escalate to the on-call engineer
  when: recovery.outcome != 'recovered'
"""

RETURN = r"""
outcome:
  description: V(recovered), V(not_recovered), V(recurred) or V(unreachable).
  returned: always
  type: str
  sample: recovered
recovered:
  description: Whether the value became healthy and stayed so for O(hold_for).
  returned: always
  type: bool
recovered_at:
  description: When the value was first seen healthy (ISO 8601).
  returned: always
  type: str
recurred_at:
  description: When the value turned unhealthy again during the hold.
  returned: always
  type: str
last_value:
  description: The last value seen (V(null) when there were no series or Prometheus was unreachable).
  returned: always
  type: float
samples:
  description: The samples taken, as C([iso_time, value]) pairs (the last 200).
  returned: always
  type: list
  elements: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._http import ServiceError
from ansible_collections.sre.runbooks.plugins.module_utils._prometheus import (
    PromQLError,
    client_from_params,
    parse_duration,
    prometheus_argument_spec,
    watch,
)


def main() -> None:
    argument_spec = prometheus_argument_spec()
    argument_spec.update(
        query={"type": "str", "required": True},
        threshold={"type": "float", "required": True},
        healthy_when={"type": "str", "choices": ["below", "above"], "default": "below"},
        recover_within={"type": "str", "default": "30m"},
        hold_for={"type": "str", "default": "15m"},
        interval={"type": "str", "default": "30s"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        client = client_from_params(params)
        result = watch(client, params["query"], params["threshold"], params["healthy_when"],
                       recover_within=parse_duration(params["recover_within"], "recover_within"),
                       hold_for=parse_duration(params["hold_for"], "hold_for"),
                       interval=parse_duration(params["interval"], "interval"))
    except PromQLError as exc:
        module.fail_json(msg=f"query: Prometheus rejected the PromQL: {exc}")
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    except ServiceError as exc:
        module.fail_json(msg=f"url: {exc}")
    module.exit_json(changed=False, query=params["query"], **result)


if __name__ == "__main__":
    main()
