#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: remediation_lock
short_description: Take or give back the lock that makes two runs of the same remediation on the same target take turns
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - A lease lock on the host where a remediation acts. Two runs of the same remediation on the same target (two alerts
    firing at once, a person and the automation, a retry of a job still running) serialise on it, and the second learns
    that the first acted (RV(others), RV(contended)) so it can read the state again before it changes anything.
  - One file per lock name in O(path) (created mode 0700), holding the owner, the process, the host and the lease's end.
    Every change is made under an exclusive C(flock) and written with a rename, so two contenders never both get the lock
    and a reader never sees half a record.
  - The lock outlives the task that takes it. It is held until its owner releases it (O(state=released)), its lease
    (O(ttl)) runs out, or the process named by O(pid) on this same host and PID namespace has ended; a later contender
    then takes it over and says so (RV(took_over)).
  - A held lock is waited for up to O(wait) seconds; then the task fails with a message naming the holder and since when.
  - Only the owner releases a lock (or anyone with O(force=true)); releasing a lock that is not held changes nothing.
  - In check mode nothing is created, taken, waited for or released; the result says what would be done.
options:
  state:
    description:
      - V(acquired) takes the lock for O(owner) (waiting up to O(wait) seconds); taking it again as the same owner renews the lease.
      - V(released) gives it back.
    type: str
    choices: [acquired, released]
    default: acquired
  name:
    description:
      - The lock, usually C(<remediation>:<target>), for example V(high_error_rate:release) or V(pg_terminate:residency).
      - '1 to 128 letters, digits and C(. _ : @ + = -), starting with a letter or digit; no C(/) and no C(..).'
    type: str
    required: true
  path:
    description: Directory holding the locks on the host where the remediation acts; created mode 0700. A symlink is refused.
    type: path
    default: /run/lock/sre-runbooks
  owner:
    description:
      - Who holds the lock, for example the incident id and the run. Shown to whoever waits for it; only this owner releases it.
    type: str
    required: true
  wait:
    description: Seconds to wait for a lock held by another owner before failing. V(0) fails at once.
    type: float
    default: 0
  ttl:
    description:
      - The lease, in seconds. A lock held longer than this by an owner that did not renew it is stale and the next
        contender takes it over. Make it longer than the remediation takes.
    type: float
    default: 3600
  pid:
    description:
      - A process on this host whose end frees the lock at once (for example the C(ansible-playbook) process when the
        controller is the host the remediation acts on). Only checked from the same host and PID namespace.
    type: int
  since:
    description:
      - An ISO 8601 time or epoch seconds, typically when this run read the state it is about to change. Other owners
        that held the lock and let go of it after this time are returned in RV(others).
    type: str
  note:
    description: What the holder is doing (O(state=acquired)) or did (O(state=released)); shown to the next holder in RV(previous).
    type: str
  force:
    description: With O(state=released), break a lock another owner holds (a person clearing a lock a dead run left behind).
    type: bool
    default: false
notes:
  - Supports C(check_mode). Not C(diff).
  - The lease is not renewed by itself; a remediation that may run longer than O(ttl) takes the lock again as the same owner.
"""

EXAMPLES = r"""
- name: Take the rollback lock on the app host (wait up to 10 minutes for another run)
  sre.runbooks.remediation_lock:
    name: high_error_rate:release
    owner: "{{ incident_id }} run {{ run_token }}"
    wait: 600
    ttl: 1800
    since: "{{ investigation_started_at }}"
  register: rollback_lock

- name: Read the state again when another run acted since we looked
  ansible.builtin.debug:
    msg: "{{ rollback_lock.others | map(attribute='owner') | join(', ') }} acted first"
  when: rollback_lock.others | length > 0

- name: Give it back
  sre.runbooks.remediation_lock:
    name: high_error_rate:release
    owner: "{{ incident_id }} run {{ run_token }}"
    state: released
    note: rolled back 1.4.0 to 1.3.2
"""

RETURN = r"""
name:
  description: The lock's name.
  returned: always
  type: str
lock_file:
  description: The file that holds the lock while it is held.
  returned: always
  type: str
  sample: /run/lock/sre-runbooks/high_error_rate:release.lock
acquired:
  description: Whether this task took (or renewed) the lock.
  returned: always
  type: bool
holder:
  description:
    - Who holds the lock after the task (this owner after V(acquired)); in check mode, and in a failure after waiting, who holds it now.
    - C(owner), C(pid), C(host), C(acquired_at), C(expires_at), C(note), C(held_seconds). None when nobody holds it.
  returned: always
  type: dict
waited:
  description: Seconds spent waiting for another holder.
  returned: always
  type: float
waited_for:
  description: The holder that was waited for (as RV(holder)), or None.
  returned: always
  type: dict
contended:
  description: Whether another owner held the lock when this task asked for it (waited for, or taken over as stale).
  returned: always
  type: bool
took_over:
  description: The stale holder taken over, with C(reason) (lease ran out, process ended), or None.
  returned: always
  type: dict
previous:
  description: The last holder that let go of the lock (C(owner), C(acquired_at), C(released_at), C(released_by), C(note)), or None.
  returned: always
  type: dict
others:
  description: Other owners that let go of the lock after O(since), oldest first (each as RV(previous)); they may have acted on the target.
  returned: always
  type: list
  elements: dict
msg:
  description: What was done.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._remediation_lock import DEFAULT_PATH, LockError, RemediationLock, parse_since, validate


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "default": "acquired", "choices": ["acquired", "released"]},
            "name": {"type": "str", "required": True},
            "path": {"type": "path", "default": DEFAULT_PATH},
            "owner": {"type": "str", "required": True},
            "wait": {"type": "float", "default": 0},
            "ttl": {"type": "float", "default": 3600},
            "pid": {"type": "int"},
            "since": {"type": "str"},
            "note": {"type": "str"},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    problem = validate(params)
    if problem:
        module.fail_json(msg=problem, option=problem.split(":", 1)[0])
    lock = RemediationLock(params["path"], params["name"])
    try:
        if params["state"] == "acquired":
            result = lock.acquire(params["owner"], params["wait"], params["ttl"], pid=params["pid"], note=params["note"] or "",
                                  since=parse_since(params["since"]), check_mode=module.check_mode)
        else:
            result = lock.release(params["owner"], force=params["force"], note=params["note"] or "", check_mode=module.check_mode)
    except LockError as exc:
        module.fail_json(msg=str(exc), name=params["name"], **({"option": exc.option} if exc.option else {}), **exc.details)
    except OSError as exc:
        module.fail_json(msg=f"path: {exc.filename or params['path']}: {exc.strerror}", option="path", name=params["name"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
