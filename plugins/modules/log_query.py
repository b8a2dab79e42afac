#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module log_query: filter, group and analyse application logs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: log_query
short_description: Filter, group and analyse application logs without reading them whole
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Reads JSON (flat Loguru-shaped, Loguru C(serialize=True), GELF), Loguru text, Python logging text,
    logfmt and plain text logs, auto-detected per line, including rotated and gzipped files.
  - Filters by level, time window, substring, regular expression and field values; groups by error
    fingerprint, exception type, level or any field; keeps the last matching records.
  - O(mode=auth) groups authentication failures by IP and by account and reports the runbook's
    indicators of attack (one IP trying many accounts, many IPs trying one account, machine-regular timing).
  - Streams in constant memory. A time window is found by bisection on byte offsets in plain files.
    When a filter implies a literal that every matching line contains (a level token, the search string,
    a field value) only lines containing it are parsed, and each is verified, so results are exact.
  - Replaces the runbooks' C(log_parser.py), C(error_aggregator.py), C(analyze_logs.py) and the
    FailedAuthenticationSpike C(grep | sort | uniq -c) pipeline.
  - Never changes anything; runs fully in check mode.
options:
  path:
    description:
      - A log file, a list of files, or glob patterns.
      - Files are read oldest first (C(app.log.2.gz), C(app.log.1), C(app.log)); gzip is detected by content.
    type: list
    elements: str
    required: true
  include_rotated:
    description:
      - Also read rotations of each plain path given (C(app.log.1), C(app.log.2.gz), C(app.log-20261122.gz)).
    type: bool
    default: true
  format:
    description:
      - Log format. V(auto) detects it per line.
    type: str
    default: auto
    choices: [auto, json, loguru_text, python_logging, logfmt, text]
  level:
    description:
      - Minimum level, for example V(ERROR) for ERROR and CRITICAL.
      - Names are normalised across formats (V(WARN) is WARNING, V(FATAL) is CRITICAL, GELF syslog numbers).
      - Mutually exclusive with O(levels).
    type: str
  levels:
    description:
      - Exact list of levels to keep.
    type: list
    elements: str
  since:
    description:
      - Start of the time window, inclusive. A duration before O(now) (V(15m), V(1h), V(24h), V(2d), V(last 1 hour))
        or an absolute ISO 8601 time.
      - Records without a timestamp are left out when a window is set.
      - A gzipped file whose modification time is older than O(since) is skipped without being read
        (a rotated archive is not written after rotation).
    type: str
  until:
    description:
      - End of the time window, inclusive; same forms as O(since).
    type: str
  now:
    description:
      - Reference time for relative O(since) and O(until), ISO 8601. Defaults to the current time;
        set it to replay an incident's window.
    type: str
  default_timezone:
    description:
      - Time zone of timestamps written without one (C(UTC), C(local), an offset like C(+02:00) or an IANA name).
    type: str
    default: UTC
  search:
    description:
      - Plain substring that must occur in the record's text as written (the JSON line, or the text line
        and its traceback), like grep; for JSON records also in the decoded message and exception, since
        JSON writers escape quotes and non-ASCII characters.
    type: str
  ignore_case:
    description:
      - Match O(search) and O(regex) case-insensitively.
    type: bool
    default: false
  regex:
    description:
      - Python regular expression searched where O(search) is.
      - When every match must contain a literal (C(timed out after) in C(timed out after \d+ ms)), only lines
        holding it are parsed.
    type: str
  fields:
    description:
      - 'Field filters, all of which must hold, for example C({event: auth_failure}). A list value means any of them.'
      - Fields are the JSON keys beyond the standard ones, GELF C(_)fields, logfmt pairs, and C(key=value) pairs in
        the message of any format.
    type: dict
  group_by:
    description:
      - V(fingerprint) (exception type and the message with ids, numbers, addresses and quoted values replaced),
        V(exception_type), V(level), V(logger), V(message), any field name (V(endpoint), V(ip), V(account)), or V(none).
      - Defaults to V(fingerprint), or V(ip) when O(mode=auth).
    type: str
  top:
    description:
      - Number of groups (and of IPs and accounts in O(mode=auth)) returned.
    type: int
    default: 10
  samples:
    description:
      - Records kept per group as examples.
    type: int
    default: 1
  limit:
    description:
      - Number of matching records returned (the last ones, newest last).
    type: int
    default: 20
  max_message_length:
    description:
      - Messages and exception values longer than this are truncated in the result.
    type: int
    default: 500
  max_groups:
    description:
      - Most distinct groups (and IPs, accounts) tracked; the excess is counted under C(__other__),
        which keeps memory constant on any input.
    type: int
    default: 10000
  workers:
    description:
      - Processes that scan a large plain file (from 48 MiB, 4 MiB when every line is parsed) in parallel.
        V(0) uses one per CPU not busy right now (runnable tasks in C(/proc/loadavg)), at most 4; V(1) never forks.
    type: int
    default: 0
  timeout:
    description:
      - Seconds the whole query may take; past it the task fails naming O(timeout) and nothing is returned.
        A regex with nested repetition (C((a+\)+)) can take exponential time on one line, and this bounds it.
      - V(0) means no limit.
    type: float
    default: 300
  mode:
    description:
      - V(records) filters and groups records. V(auth) keeps only authentication failures (see O(auth_event))
        and adds the C(auth) analysis.
    type: str
    default: records
    choices: [records, auth]
  auth_event:
    description:
      - A record is an authentication failure when its O(auth_event_field) equals this, or its message contains it.
    type: str
    default: auth_failure
  auth_event_field:
    description:
      - Field holding the event name.
    type: str
    default: event
  auth_ip_field:
    description:
      - Field, or list of fields, holding the client address; the first one a record has is used. Each is looked
        up as a structured field, then as C(name=…) in the message.
      - The default covers the Residency Scheduler (C(ip=…)) and the ML API (C(ip=…)).
    type: list
    elements: str
    default: [ip, client_ip, remote_addr, source_ip, src_ip]
  auth_account_field:
    description:
      - Field, or list of fields, holding the account that was tried; the first one a record has is used.
      - The default covers the Residency Scheduler (C(user=…)) and the ML API (C(key=…), the id of the API key
        presented).
    type: list
    elements: str
    default: [account, user, username, user_id, email, key]
  auth_timeline_buckets:
    description:
      - At most this many rows in C(auth.timeline.buckets). The bucket is the smallest of 1, 5, 15, 30 minutes,
        1, 3, 6, 12 hours, 1 day or 1 week that covers the first to the last failure in that many rows.
    type: int
    default: 60
  auth_accounts_per_ip:
    description:
      - An IP that failed on at least this many distinct accounts is reported (V(same_ip_many_accounts)).
    type: int
    default: 5
  auth_ips_per_account:
    description:
      - An account that failed from at least this many distinct IPs is reported (V(distributed_ips_same_account)).
    type: int
    default: 5
  auth_timing_min_attempts:
    description:
      - Failures an IP (or an account tried from several IPs) needs before its timing is judged.
    type: int
    default: 10
  auth_timing_max_cv:
    description:
      - An IP whose inter-arrival times have a coefficient of variation (standard deviation / mean) at or below
        this is reported as machine-regular (V(machine_regular_timing)). People retry irregularly (about 1).
      - The same test runs per account tried from two or more IPs (a botnet paced by one scheduler).
    type: float
    default: 0.25
notes:
  - Supports check mode; the module never changes anything.
  - Timestamps a little out of order (up to 60 seconds) around O(since) and O(until) are tolerated.
  - In auto mode the literal prefilter for O(level) uses the level spelling (key, spacing, case) found in the
    first 64 KiB of each file; use O(format) and uniform files for exotic mixtures.
  - C(scanned_lines) counts the lines looked at; lines skipped by the prefilter are not counted.
attributes:
  check_mode:
    description: Can run in check mode and return the same result.
    support: full
  diff_mode:
    description: Reports nothing as a diff; it changes nothing.
    support: none
"""

EXAMPLES = r"""
- name: Errors of the last hour, grouped by fingerprint (HighErrorRate investigation)
  sre.runbooks.log_query:
    path: /var/log/app/scheduler.log
    level: ERROR
    since: 1h
  register: errors

- name: Error types across the rotated logs (error_aggregator.py)
  sre.runbooks.log_query:
    path: /var/log/app/scheduler.log
    level: ERROR
    group_by: exception_type
    top: 20

- name: Which endpoints fail
  sre.runbooks.log_query:
    path: /var/log/app/scheduler.log
    level: ERROR
    since: 30m
    group_by: endpoint

- name: FailedAuthenticationSpike - source IPs, targeted accounts, attack indicators
  sre.runbooks.log_query:
    path: /var/log/app/scheduler.log
    mode: auth
    since: 1h
  register: auth

- name: Block what the indicators flagged
  ansible.builtin.debug:
    msg: "{{ auth.auth.blocklist_candidates }}"

- name: ML API errors of the last 15 minutes (analyze_logs.py --last-15m --error-only)
  sre.runbooks.log_query:
    path: /var/log/heart-disease/api.log
    format: python_logging
    level: ERROR
    since: 15m
"""

RETURN = r"""
matched:
  description: Number of records that matched every filter.
  returned: success
  type: int
  sample: 412
scanned_lines:
  description: Lines looked at (lines skipped unseen by the literal prefilter are not counted).
  returned: success
  type: int
  sample: 1200
unparsed_lines:
  description: Lines looked at that were no record of any known format (skipped).
  returned: success
  type: int
  sample: 0
unparsed_samples:
  description: Up to 3 of those lines, truncated.
  returned: success
  type: list
  elements: str
files:
  description: One entry per file, oldest first.
  returned: success
  type: list
  elements: dict
  contains:
    path:
      description: Absolute path.
      type: str
    size:
      description: Size in bytes.
      type: int
    bytes_read:
      description: Bytes read from disk (compressed bytes for gzip).
      type: int
    bisected:
      description: Whether the time window was found by bisection.
      type: bool
    compressed:
      description: Whether the file is gzip.
      type: bool
    format:
      description: Format detected at the head of the file.
      type: str
    prefilter:
      description: Literals a line had to contain to be parsed, or null when every line was parsed.
      type: list
      elements: str
    workers:
      description: Processes that scanned the file.
      type: int
    skipped:
      description: Why the file was not read (C(empty), C(modified before since)), or null.
      type: str
window:
  description: The resolved time window (ISO 8601, UTC), nulls when open.
  returned: success
  type: dict
  sample: {"since": "2026-11-23T08:14:03.000000+00:00", "until": null}
first_seen:
  description: Timestamp of the earliest matching record.
  returned: success
  type: str
last_seen:
  description: Timestamp of the latest matching record.
  returned: success
  type: str
group_by:
  description: What the groups are keyed by.
  returned: success
  type: str
  sample: fingerprint
group_count:
  description: Distinct groups seen (bounded by O(max_groups)).
  returned: success
  type: int
groups:
  description: The O(top) groups, largest first.
  returned: success
  type: list
  elements: dict
  contains:
    key:
      description: Group key.
      type: str
      sample: "OperationalError: Database query failed: connection to server at <str> (<ip>), port <n> failed"
    count:
      description: Records in the group.
      type: int
    first_seen:
      description: Earliest record of the group.
      type: str
    last_seen:
      description: Latest record of the group.
      type: str
    sample:
      description: The first example record (same shape as O(limit) records).
      type: dict
    samples:
      description: Up to O(samples) example records.
      type: list
      elements: dict
records:
  description: The last O(limit) matching records, newest last.
  returned: success
  type: list
  elements: dict
  contains:
    timestamp:
      description: ISO 8601 UTC.
      type: str
    level:
      description: Canonical level.
      type: str
    logger:
      description: Logger name.
      type: str
    message:
      description: Message, truncated to O(max_message_length).
      type: str
    exception:
      description: C(type), C(value) and C(traceback) (truncated), or null.
      type: dict
    fields:
      description: Other fields of the record.
      type: dict
    file:
      description: File it came from.
      type: str
by_level:
  description: Matching records per canonical level.
  returned: success
  type: dict
  sample: {"CRITICAL": 3, "ERROR": 409}
auth:
  description: Authentication failure analysis.
  returned: when O(mode=auth)
  type: dict
  contains:
    failures:
      description: Authentication failures matched.
      type: int
    by_ip:
      description: Top IPs with failure count, distinct accounts, first and last seen, mean interval and its coefficient of variation.
      type: list
      elements: dict
    by_account:
      description: Top accounts with failure count and distinct IPs.
      type: list
      elements: dict
    indicators:
      description:
        - Indicators of attack, each with C(indicator) (V(same_ip_many_accounts), V(distributed_ips_same_account),
          V(machine_regular_timing)), the IP or account, the numbers and the threshold, and a readable C(detail).
      type: list
      elements: dict
    blocklist_candidates:
      description: IPs flagged by an IP-based indicator.
      type: list
      elements: str
    thresholds:
      description: The thresholds applied.
      type: dict
    timeline:
      description:
        - Failures over time, from the first to the last failure, empty buckets included - C(bucket_seconds),
          C(buckets) (C(start), C(failures)), C(empty_buckets), and C(peak) (C(start), C(failures)), the busiest
          slot of C(peak_seconds) (60 unless months of failures were counted).
      type: dict
      sample: {"bucket_seconds": 300, "buckets": [{"start": "2026-11-23T09:00:00.000000+00:00", "failures": 4}],
               "empty_buckets": 0, "peak": {"start": "2026-11-23T09:02:00.000000+00:00", "failures": 3}, "peak_seconds": 60}
    fields:
      description: The IP and account field names looked up, in order.
      type: dict
      sample: {"ip": ["ip"], "account": ["account", "user"]}
elapsed_seconds:
  description: Time the query took.
  returned: success
  type: float
summary:
  description: One readable line.
  returned: success
  type: str
  sample: "412 matching records in 2 file(s), 3.1 MiB read (CRITICAL 3, ERROR 409); top fingerprint: TimeoutError: ... (120)"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._log_query import LogQueryError, run_query


def argument_spec() -> dict:
    return {
        "path": {"type": "list", "elements": "str", "required": True},
        "include_rotated": {"type": "bool", "default": True},
        "format": {"type": "str", "default": "auto", "choices": ["auto", "json", "loguru_text", "python_logging", "logfmt", "text"]},
        "level": {"type": "str"},
        "levels": {"type": "list", "elements": "str"},
        "since": {"type": "str"},
        "until": {"type": "str"},
        "now": {"type": "str"},
        "default_timezone": {"type": "str", "default": "UTC"},
        "search": {"type": "str"},
        "ignore_case": {"type": "bool", "default": False},
        "regex": {"type": "str"},
        "fields": {"type": "dict"},
        "group_by": {"type": "str"},
        "top": {"type": "int", "default": 10},
        "samples": {"type": "int", "default": 1},
        "limit": {"type": "int", "default": 20},
        "max_message_length": {"type": "int", "default": 500},
        "max_groups": {"type": "int", "default": 10000},
        "workers": {"type": "int", "default": 0},
        "timeout": {"type": "float", "default": 300},
        "mode": {"type": "str", "default": "records", "choices": ["records", "auth"]},
        "auth_event": {"type": "str", "default": "auth_failure"},
        "auth_event_field": {"type": "str", "default": "event"},
        "auth_ip_field": {"type": "list", "elements": "str", "default": ["ip", "client_ip", "remote_addr", "source_ip", "src_ip"]},
        "auth_account_field": {"type": "list", "elements": "str", "no_log": False,
                               "default": ["account", "user", "username", "user_id", "email", "key"]},
        "auth_timeline_buckets": {"type": "int", "default": 60},
        "auth_accounts_per_ip": {"type": "int", "default": 5},
        "auth_ips_per_account": {"type": "int", "default": 5},
        "auth_timing_min_attempts": {"type": "int", "default": 10},
        "auth_timing_max_cv": {"type": "float", "default": 0.25},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), mutually_exclusive=[("level", "levels")], supports_check_mode=True)
    try:
        result = run_query(module.params)
    except LogQueryError as exc:
        module.fail_json(msg=str(exc), option=exc.option)
    except (OSError, RuntimeError) as exc:
        module.fail_json(msg=f"path: could not read the logs: {exc}", option="path")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
