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
  - O(action=restore) puts a backup archive (tar, optionally compressed) with a C(manifest.json) back in service. Every
    member is checked against the manifest's sha256 hashes before anything is touched; a corrupt, truncated or tampered
    archive, or one with unlisted or unsafe members, fails and leaves the current version untouched.
  - With O(layout=releases) the verified archive is unpacked as C(<path>/<version>) and the current link swapped to it.
    With O(layout=files) (the Heart Disease model layout, C(restore_model --version)) each listed file is renamed into
    place under O(path), the O(version_file) is written last, and if any rename fails the files already replaced are put
    back, so the previous version stays whole. A run killed between two renames leaves a journal
    (C(.restore-journal.json) under O(path)); the next restore completes that interrupted one first (RV(completed_interrupted)),
    and O(action=list) names it in RV(interrupted_restore).
options:
  path:
    description:
      - The releases directory (O(layout=releases)), or the installation's home directory (O(layout=files)), for example
        V(/opt/heart-disease).
    type: path
    required: true
  layout:
    description:
      - V(releases) is one directory per release and a O(current_link) symlink.
      - V(files) is files in place under O(path) (paths as listed in the manifest) and a O(version_file) naming the live version.
    type: str
    choices: [releases, files]
    default: releases
  archive:
    description: With O(action=restore), the backup archive to restore. Either this or O(backup_dir) and O(version).
    type: path
  backup_dir:
    description:
      - Directory of backup archives named after O(archive_pattern). With O(action=restore) the archive of O(version) is taken from it;
        with O(action=list) its archives are listed in RV(backups).
    type: path
  archive_pattern:
    description: File name of a version's archive in O(backup_dir); C({version}) stands for the version.
    type: str
    default: backup_{version}.tar.gz
  version_file:
    description: With O(layout=files), the file (relative to O(path)) that names the live version.
    type: str
    default: models/VERSION
  current_link:
    description: Name of the symlink inside O(path) that points at the live release.
    type: str
    default: current
  action:
    description:
      - V(list) reports the releases, the current one and the previous one, and changes nothing.
      - V(switch) makes O(version) current.
      - V(rollback) makes the release before the current one current.
      - V(restore) verifies a backup archive against its manifest and makes it the current version.
    type: str
    choices: [list, switch, rollback, restore]
    default: list
  version:
    description:
      - With O(action=switch), the release to make current (directory name or the version in its metadata).
      - With O(action=restore) and O(backup_dir), the version whose archive to restore.
    type: str
  from_version:
    description:
      - With O(action=rollback), only roll back while this release is current.
      - Makes a rollback safe to repeat; runbooks pass the release they found correlated with the errors.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports which release would become current and changes nothing; a restore still verifies every hash of the archive.
  diff_mode:
    support: full
    description: Shows the current link before and after; for O(layout=files) the version and every file's sha256.
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

- name: Restore the model version of 2026-11-20 (restore_model --version), every hash checked first
  sre.runbooks.release:
    path: /opt/heart-disease
    layout: files
    action: restore
    backup_dir: /opt/heart-disease/backups
    version: 20261120T020000Z

- name: Restore a release from an archive and make it current
  sre.runbooks.release:
    path: /srv/residency-scheduler/releases
    action: restore
    archive: /srv/backups/residency-scheduler-v1.4.1.tar.gz
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
backups:
  description: Archives in O(backup_dir) oldest first, with C(version), C(archive), C(size), C(created_at) and C(metrics) from their manifest.
  returned: when O(action=list) and O(backup_dir) is set
  type: list
  elements: dict
version:
  description: The version restored (from the manifest's C(version)).
  returned: when O(action=restore)
  type: str
previous_version:
  description: The version that was live before the restore.
  returned: when O(action=restore)
  type: str
files:
  description: The files of the restored version (all verified against the manifest).
  returned: when O(action=restore)
  type: list
  elements: str
manifest:
  description: The archive's manifest without its file list (version, created_at, metrics, ...).
  returned: when O(action=restore)
  type: dict
completed_interrupted:
  description: The version of an earlier restore, killed part-way, that this run completed (or would, in check mode) first.
  returned: when O(action=restore), O(layout=files) and such a restore was found
  type: str
interrupted_restore:
  description: The version of a restore killed part-way whose files are not all in place yet (the next restore completes it), or V(null).
  returned: when O(action=list) and O(layout=files)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._release import (
    ReleaseError, find_archive, interrupted_restore, list_backups, list_releases, read_version, restore_files, restore_release, switch,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "current_link": {"type": "str", "default": "current"},
            "action": {"type": "str", "choices": ["list", "switch", "rollback", "restore"], "default": "list"},
            "version": {"type": "str"},
            "from_version": {"type": "str"},
            "layout": {"type": "str", "choices": ["releases", "files"], "default": "releases"},
            "archive": {"type": "path"},
            "backup_dir": {"type": "path"},
            "archive_pattern": {"type": "str", "default": "backup_{version}.tar.gz"},
            "version_file": {"type": "str", "default": "models/VERSION"},
        },
        required_if=[("action", "switch", ("version",)), ("action", "restore", ("archive", "backup_dir"), True)],
        supports_check_mode=True,
    )
    params = module.params
    if "{version}" not in params["archive_pattern"] or "/" in params["archive_pattern"]:
        module.fail_json(msg=f"archive_pattern: must be a file name containing {{version}}, got {params['archive_pattern']!r}")
    if params["layout"] == "files" and params["action"] in ("switch", "rollback"):
        module.fail_json(msg=f"layout: action={params['action']} needs layout=releases; restore a backup for layout=files")
    try:
        if params["action"] == "list":
            if params["layout"] == "files":
                result = {"current": read_version(params["path"], params["version_file"]),
                          "interrupted_restore": interrupted_restore(params["path"])}
            else:
                result = list_releases(params["path"], params["current_link"])
            if params["backup_dir"]:
                result["backups"] = list_backups(params["backup_dir"], params["archive_pattern"])
            result["changed"] = False
        elif params["action"] == "restore":
            if params["archive"]:
                archive = params["archive"]
            elif params["version"]:
                archive = find_archive(params["backup_dir"], params["version"], params["archive_pattern"])
            else:
                raise ReleaseError("version: required with backup_dir for action=restore (or give archive)")
            if params["layout"] == "files":
                result = restore_files(archive, params["path"], params["version_file"], check_mode=module.check_mode,
                                       expected_version=params["version"])
            else:
                result = restore_release(archive, params["path"], params["current_link"], check_mode=module.check_mode,
                                         expected_version=params["version"])
            if not module._diff:  # pylint: disable=protected-access
                result.pop("diff")
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
