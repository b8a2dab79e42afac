#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: http_probe
short_description: Send N requests to an endpoint and report status counts, error rates and latency percentiles
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - The runbooks' C(curl /health) and C(quick_load_test.py) - N requests from O(concurrency) threads, each on a new
    connection, with status counts, error rates (unexpected statuses and transport errors separately), latency
    min/mean/p50/p95/p99/max to the last byte, throughput and the first error samples.
  - The result says whether the endpoint is RV(healthy) against O(fail_on); the task only fails on that when
    O(fail_when_unhealthy=true). An endpoint that cannot be reached is counted as transport errors, not a module failure.
  - Always reports C(changed=false) because it changes no configuration, and it runs in check mode too (it is a
    probe). A GET or HEAD probe is read-only; a POST probe (for example to C(/predict)) is allowed, but whatever
    the endpoint does with those requests is the endpoint's business, so choose O(count) with care.
  - O(count) is capped at 10000 and the probe stops starting new requests after O(max_duration) seconds.
options:
  url:
    description: The full URL to probe, with path and query, for example V(http://127.0.0.1:8000/health).
    type: str
    required: true
  method:
    description: HTTP method.
    type: str
    choices: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS]
    default: GET
  count:
    description: Number of requests, between 1 and 10000.
    type: int
    default: 10
  concurrency:
    description: Number of requests in flight at once (threads), between 1 and 100.
    type: int
    default: 1
  timeout:
    description: Seconds to wait for the connection and for each read of one request.
    type: float
    default: 10
  max_duration:
    description:
      - Time budget in seconds. No new request starts after it; requests in flight finish.
      - RV(stopped_early) and RV(stop_reason) then say so, and the statistics cover the completed requests.
    type: float
    default: 60
  headers:
    description:
      - Request headers.
      - Values of C(Authorization), C(Proxy-Authorization), C(Cookie), C(X-Api-Key), C(X-Auth-Token) and C(Api-Key)
        are hidden in the result, but may still reach the target's syslog with the module's arguments; pass
        credentials with O(bearer_token) or O(secret_headers) instead.
    type: dict
  secret_headers:
    description: Request headers whose values are secrets; never shown in results or logs.
    type: dict
  bearer_token:
    description: Sent as an C(Authorization) header with the C(Bearer) scheme; never shown in results or logs.
    type: str
  body:
    description: Raw request body (for example form data). Mutually exclusive with O(json).
    type: str
  json:
    description: A value sent as a JSON body, with C(Content-Type application/json) unless a header sets another.
    type: raw
  expected_status:
    description: Status codes that count as success; any other status is an error of kind C(unexpected_status).
    type: list
    elements: int
    default: [200]
  body_contains:
    description: A response with an expected status but without this text counts as an error of kind C(body_mismatch).
    type: str
  body_regex:
    description: Like O(body_contains), with a Python regular expression searched in the body.
    type: str
  validate_certs:
    description: Verify the server's TLS certificate for https URLs.
    type: bool
    default: true
  ca_path:
    description: PEM file of CA certificates to verify the server with.
    type: path
  follow_redirects:
    description: Follow redirects of GET and HEAD requests; when V(false) a 3xx is the status recorded.
    type: bool
    default: true
  use_proxy:
    description: Use the proxy from the environment (C(http_proxy), C(https_proxy)), if any.
    type: bool
    default: true
  fail_on:
    description: Thresholds RV(healthy) is judged against. The defaults are the runbook's HighErrorRate and SlowResponseTime alerts.
    type: dict
    default: {}
    suboptions:
      max_error_rate:
        description: Highest acceptable share (0 to 1) of requests that are errors of any kind.
        type: float
        default: 0.05
      max_p95_ms:
        description: Highest acceptable 95th percentile latency in milliseconds.
        type: float
        default: 2000
  fail_when_unhealthy:
    description: Fail the task when the probe is not RV(healthy); otherwise only report it.
    type: bool
    default: false
seealso:
  - module: ansible.builtin.uri
"""

EXAMPLES = r"""
- name: Health check, as the runbook's curl /health
  sre.runbooks.http_probe:
    url: http://127.0.0.1:8000/health
    count: 5
    body_contains: healthy
  register: health

- name: Quick load test of the prediction endpoint, fail when unhealthy
  sre.runbooks.http_probe:
    url: http://127.0.0.1:8000/predict
    method: POST
    bearer_token: "{{ api_token }}"
    json: {age: 63, sex: 1, cp: 3, trestbps: 145, chol: 233, fbs: 1, restecg: 0, thalach: 150, exang: 0, oldpeak: 2.3,
           slope: 0, ca: 0, thal: 1}
    count: 200
    concurrency: 8
    max_duration: 60
    fail_on:
      max_error_rate: 0.01
      max_p95_ms: 500
    fail_when_unhealthy: true

- name: A redirect is the expected answer
  sre.runbooks.http_probe:
    url: http://127.0.0.1:8080/
    follow_redirects: false
    expected_status: [301, 302]
"""

RETURN = r"""
url:
  description: The URL probed, with any password in it hidden.
  returned: always
  type: str
method:
  description: The HTTP method used.
  returned: always
  type: str
requested:
  description: O(count).
  returned: always
  type: int
completed:
  description: Requests that finished, with a response or a transport error.
  returned: always
  type: int
  sample: 200
stopped_early:
  description: Whether O(max_duration) ended the probe before O(count) requests.
  returned: always
  type: bool
stop_reason:
  description: V(max_duration) when RV(stopped_early), else V(null).
  returned: always
  type: str
duration_seconds:
  description: Wall time of the probe.
  returned: always
  type: float
throughput_rps:
  description: Completed requests per second.
  returned: always
  type: float
  sample: 143.5
reachable:
  description: Whether at least one request got an HTTP response.
  returned: always
  type: bool
status_counts:
  description: Responses per HTTP status code.
  returned: always
  type: dict
  sample: {"200": 190, "500": 10}
ok:
  description: Requests with an expected status and a matching body.
  returned: always
  type: int
errors:
  description: Errors by kind - C(unexpected_status), C(body_mismatch), C(transport) - and their C(total).
  returned: always
  type: dict
  sample: {"total": 12, "unexpected_status": 10, "body_mismatch": 0, "transport": 2}
transport_errors:
  description: Transport errors by reason.
  returned: always
  type: dict
  sample: {"connection refused": 2}
error_rate:
  description: Share of completed requests that are errors of any kind.
  returned: always
  type: float
  sample: 0.06
status_error_rate:
  description: Share of completed requests answered with a status not in O(expected_status).
  returned: always
  type: float
transport_error_rate:
  description: Share of completed requests that got no HTTP response (refused, reset, timed out, TLS).
  returned: always
  type: float
latency_ms:
  description: C(min), C(mean), C(p50), C(p95), C(p99), C(max) in milliseconds over the requests that got a response
    (any status); percentiles are linearly interpolated.
  returned: always
  type: dict
  sample: {"min": 3.1, "mean": 18.4, "p50": 12.0, "p95": 61.2, "p99": 95.0, "max": 120.3}
error_samples:
  description: The first five errors with C(request) (1-based), C(kind), C(status), C(latency_ms) and C(error) or the
    first 200 characters of C(body).
  returned: always
  type: list
  elements: dict
healthy:
  description: Whether the probe met O(fail_on) (and at least one request completed).
  returned: always
  type: bool
unhealthy_reasons:
  description: Why RV(healthy) is V(false).
  returned: always
  type: list
  elements: str
  sample: ["error rate 6.00% is above 5.00%"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._http_probe import probe, sensitive_header_values


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "method": {"type": "str", "default": "GET", "choices": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]},
            "count": {"type": "int", "default": 10},
            "concurrency": {"type": "int", "default": 1},
            "timeout": {"type": "float", "default": 10},
            "max_duration": {"type": "float", "default": 60},
            "headers": {"type": "dict"},
            "secret_headers": {"type": "dict", "no_log": True},
            "bearer_token": {"type": "str", "no_log": True},
            "body": {"type": "str"},
            "json": {"type": "raw"},
            "expected_status": {"type": "list", "elements": "int", "default": [200]},
            "body_contains": {"type": "str"},
            "body_regex": {"type": "str"},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
            "follow_redirects": {"type": "bool", "default": True},
            "use_proxy": {"type": "bool", "default": True},
            "fail_on": {"type": "dict", "default": {}, "options": {
                "max_error_rate": {"type": "float", "default": 0.05},
                "max_p95_ms": {"type": "float", "default": 2000},
            }},
            "fail_when_unhealthy": {"type": "bool", "default": False},
        },
        mutually_exclusive=[["body", "json"]],
        supports_check_mode=True,
    )
    # Credentials given in plain headers are masked in everything the module returns.
    module.no_log_values.update(sensitive_header_values(module.params["headers"]))
    try:
        result = probe(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if module.params["fail_when_unhealthy"] and not result["healthy"]:
        module.fail_json(msg=f"{result['url']} is unhealthy: {'; '.join(result['unhealthy_reasons'])}", changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
