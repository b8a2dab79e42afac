#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prometheus_query
short_description: Run PromQL instant or range queries and list active alerts
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Answers the runbooks' "check the dashboard" steps with numbers, such as per-endpoint error rates, latency
    quantiles, pool usage, cache hit rates, and which alerts are firing.
  - Read-only; never changes anything and runs fully in check mode.
  - Values are returned as floats; NaN and infinite samples become V(null).
extends_documentation_fragment:
  - sre.runbooks.prometheus
options:
  query:
    description:
      - The PromQL expression. Required unless O(kind=alerts).
      - It is sent as a form parameter, never interpolated into a URL or shell.
    type: str
  kind:
    description:
      - V(instant) evaluates O(query) at O(time).
      - V(range) evaluates it from O(start) to O(end) every O(step).
      - V(alerts) lists the alerts Prometheus currently has pending or firing (O(query) is not used).
    type: str
    choices: [instant, range, alerts]
    default: instant
  time:
    description: Evaluation time of an instant query, as V(now), an age such as V(15m) (15 minutes ago), ISO 8601 or unix time.
    type: str
    default: now
  start:
    description: Start of a range query, in the same forms as O(time).
    type: str
    default: 1h
  end:
    description: End of a range query, in the same forms as O(time).
    type: str
    default: now
  step:
    description: Resolution of a range query, a duration such as V(15s) or V(1m).
    type: str
    default: 1m
  by:
    description:
      - A label name; RV(values) then maps each value of that label to the series' value (last value for a range).
      - Handy for thresholds per endpoint, instance or person.
    type: str
  alert_name:
    description: With O(kind=alerts), only return alerts whose C(alertname) is one of these.
    type: list
    elements: str
  alert_state:
    description: With O(kind=alerts), only return alerts in these states.
    type: list
    elements: str
    choices: [pending, firing]
seealso:
  - name: Prometheus HTTP API
    description: The API this module calls.
    link: https://prometheus.io/docs/prometheus/latest/querying/api/
"""

EXAMPLES = r"""
- name: Error rate per endpoint over the last 5 minutes
  sre.runbooks.prometheus_query:
    url: http://127.0.0.1:9090
    query: >-
      sum by (handler) (rate(http_requests_total{status=~"5.."}[5m]))
      / sum by (handler) (rate(http_requests_total[5m]))
    by: handler
    allow_unreachable: true
  register: error_rate

- name: Error ratio over the last hour, one point a minute
  sre.runbooks.prometheus_query:
    kind: range
    query: sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))
    start: 1h
    step: 1m
  register: error_history

- name: Is HighErrorRate firing?
  sre.runbooks.prometheus_query:
    kind: alerts
    alert_name: [HighErrorRate]
    alert_state: [firing]
  register: firing
"""

RETURN = r"""
reachable:
  description: Whether Prometheus answered. Only V(false) when O(allow_unreachable=true).
  returned: always
  type: bool
  sample: true
error:
  description: Why Prometheus could not be reached.
  returned: when RV(reachable=false)
  type: str
  sample: "cannot reach http://127.0.0.1:9090: [Errno 111] Connection refused"
query:
  description: The query that was evaluated.
  returned: when O(kind) is instant or range
  type: str
result_type:
  description: Prometheus' result type.
  returned: when O(kind) is instant or range and Prometheus answered
  type: str
  sample: vector
series:
  description:
    - One entry per series. Instant results carry C(value) and C(timestamp); range results carry
      C(values) as C([iso_time, value]) pairs and C(last), C(min), C(max).
  returned: when O(kind) is instant or range (empty when Prometheus could not be reached)
  type: list
  elements: dict
  sample: [{"metric": {"handler": "/api/v1/schedules"}, "value": 0.31, "timestamp": "2026-11-23T09:14:03+00:00"}]
values:
  description: Series values keyed by the O(by) label.
  returned: when O(by) is set (empty when Prometheus could not be reached)
  type: dict
  sample: {"/api/v1/schedules": 0.31, "/api/v1/people": 0.0}
alerts:
  description: Active alerts with C(labels), C(annotations), C(state), C(activeAt) and C(value).
  returned: when O(kind=alerts) (empty when Prometheus could not be reached)
  type: list
  elements: dict
window:
  description: The resolved evaluation time (instant) or start, end and step (range), in ISO 8601.
  returned: when O(kind) is instant or range
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._http import ServiceError, ServiceUnreachable
from ansible_collections.sre.runbooks.plugins.module_utils._prometheus import (
    PromQLError,
    client_from_params,
    index_by_label,
    parse_duration,
    prometheus_argument_spec,
    resolve_time,
    _iso,
)


def run(params: dict) -> dict:
    """Evaluate what the parameters ask for; raise ValueError/PromQLError/Service* on failure."""
    client = client_from_params(params)
    kind = params["kind"]
    if kind == "alerts":
        alerts = client.alerts()
        if params["alert_name"]:
            alerts = [a for a in alerts if a.get("labels", {}).get("alertname") in params["alert_name"]]
        if params["alert_state"]:
            alerts = [a for a in alerts if a.get("state") in params["alert_state"]]
        return {"alerts": alerts}
    if not params["query"] or not params["query"].strip():
        raise ValueError(f"query: required when kind={kind}")
    if kind == "instant":
        at = resolve_time(params["time"], "time")
        result = client.instant(params["query"], at)
        result["window"] = {"time": _iso(at)}
    else:
        start, end = resolve_time(params["start"], "start"), resolve_time(params["end"], "end")
        step = parse_duration(params["step"], "step")
        result = client.range(params["query"], start, end, step)
        result["window"] = {"start": _iso(start), "end": _iso(end), "step": params["step"]}
    result["query"] = params["query"]
    if params["by"]:
        result["values"] = index_by_label(result["series"], params["by"])
    return result


def main() -> None:
    argument_spec = prometheus_argument_spec()
    argument_spec.update(
        query={"type": "str"},
        kind={"type": "str", "choices": ["instant", "range", "alerts"], "default": "instant"},
        time={"type": "str", "default": "now"},
        start={"type": "str", "default": "1h"},
        end={"type": "str", "default": "now"},
        step={"type": "str", "default": "1m"},
        by={"type": "str"},
        alert_name={"type": "list", "elements": "str"},
        alert_state={"type": "list", "elements": "str", "choices": ["pending", "firing"]},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = run(module.params)
    except PromQLError as exc:
        module.fail_json(msg=f"query: Prometheus rejected the PromQL: {exc}", query=module.params["query"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    except ServiceUnreachable as exc:
        if not module.params["allow_unreachable"]:
            module.fail_json(msg=f"url: {exc}", reachable=False)
        # Empty results rather than none: a playbook's result['values'] then means "nothing", not dict.values.
        empty = {"alerts": []} if module.params["kind"] == "alerts" else {"series": [], **({"values": {}} if module.params["by"] else {})}
        module.exit_json(changed=False, reachable=False, error=str(exc), **empty)
    except ServiceError as exc:
        module.fail_json(msg=f"url: {exc}", status=exc.status)
    module.exit_json(changed=False, reachable=True, **result)


if __name__ == "__main__":
    main()
