#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release
short_description: Inspect releases kept side by side with a current symlink
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - Lists the releases in a deployment directory (one sub-directory per release, a C(current) symlink
    naming the live one), oldest first, with their deployment times, so a runbook can answer
    "was there a recent deployment?" and "what would a rollback go back to?".
  - Deployment time comes from C(deployed_at) in the release's C(release.json) or C(manifest.json),
    otherwise from the directory's modification time.
  - O(action=switch) makes O(version) current and O(action=rollback) makes the previous release current.
    The switch is one atomic rename of a new symlink over the old one, so there is never a moment
    without a current release, and the previous release stays on disk for the way back.
options:
  path:
    description: The releases directory.
    type: path
    required: true
  current_link:
    description: Name of the symlink inside O(path) that points at the live release.
    type: str
    default: current
  action:
    description:
      - V(list) reports the releases, the current one and the previous one, and changes nothing.
      - V(switch) makes O(version) current.
      - V(rollback) makes the release before the current one current.
    type: str
    choices: [list, switch, rollback]
    default: list
  version:
    description: With O(action=switch), the release to make current (directory name or the version in its metadata).
    type: str
  from_version:
    description:
      - With O(action=rollback), only roll back while this release is current.
      - Makes a rollback safe to repeat; runbooks pass the release they found correlated with the errors.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports which release would become current and changes nothing.
  diff_mode:
    support: full
    description: Shows the current link before and after.
"""

EXAMPLES = r"""
- name: Recent deployments on this app host
  sre.runbooks.release:
    path: /srv/residency-scheduler/releases
  register: deployments

- name: Roll back the release that brought the errors (no-op once rolled back)
  sre.runbooks.release:
    path: /srv/residency-scheduler/releases
    action: rollback
    from_version: v1.4.2

- name: Make a named release current
  sre.runbooks.release:
    path: /srv/residency-scheduler/releases
    action: switch
    version: v1.4.1
"""

RETURN = r"""
releases:
  description: Releases oldest first, each with C(version), C(name), C(path), C(deployed_at), C(commit) and C(current).
  returned: when O(action=list)
  type: list
  elements: dict
current:
  description: Name of the live release, or V(null) when there is no current link.
  returned: always
  type: str
  sample: v1.4.2
previous:
  description: The release deployed before the current one, the rollback target.
  returned: when O(action=list)
  type: str
  sample: v1.4.1
deployed_at:
  description: When the current release was deployed (ISO 8601).
  returned: when O(action=list)
  type: str
current_since:
  description:
    - When the current link was last switched (its own modification time, ISO 8601); later than RV(deployed_at)
      when a release became current again through a rollback.
  returned: when O(action=list)
  type: str
dangling:
  description: The current link points at a release that does not exist.
  returned: when O(action=list)
  type: bool
previous_current:
  description: The release that was current before a switch or rollback.
  returned: when O(action) is switch or rollback
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._release import ReleaseError, list_releases, switch


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "current_link": {"type": "str", "default": "current"},
            "action": {"type": "str", "choices": ["list", "switch", "rollback"], "default": "list"},
            "version": {"type": "str"},
            "from_version": {"type": "str"},
        },
        required_if=[("action", "switch", ("version",))],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["action"] == "list":
            result = list_releases(params["path"], params["current_link"])
            result["changed"] = False
        else:
            result = switch(params["path"], params["version"], params["current_link"], rollback=params["action"] == "rollback",
                            from_version=params["from_version"], check_mode=module.check_mode)
            if not module._diff:  # pylint: disable=protected-access
                result.pop("diff")
    except ReleaseError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"path: cannot read {module.params['path']}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
