#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rotate_credentials
short_description: Rotate a PostgreSQL role password, a JWT signing secret or an API key, verified, with rollback
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
requirements:
  - psycopg 3 on the target for O(kind=postgres_password)
  - PyYAML on the target for O(format=yaml) (Debian C(python3-yaml), or point C(ansible_python_interpreter) at a Python that has it)
description:
  - Generates a new secret, makes it valid next to the old one, proves it works, writes the consumer's secret file atomically
    (owner and mode set before the rename), restarts or reloads the consumers, proves they work with it, and only then retires
    the old secret. If any step fails, everything done so far is undone in reverse order and the old secret is checked to work
    again (RV(old_secret_works)); the module then fails with RV(rolled_back=true).
  - O(kind=postgres_password) with O(strategy=alternating) (zero downtime) gives the idle one of O(role) / O(alternate_role) the
    new password and moves the consumer to it; the role the consumer used before keeps its password until the consumers are
    verified, then it is retired (O(retire_old)). With O(strategy=single) the role's password is replaced and its old SCRAM
    verifier put back on failure. Passwords reach the server only as SCRAM-SHA-256 verifiers computed by libpq, never as clear text.
  - O(kind=jwt_secret) writes a new signing secret and keeps the old one in O(previous_key) (the list of secrets the app still
    accepts), so tokens already issued stay valid; the check signs a token with the new secret (HS256, O(jwt_claims)).
  - O(kind=api_key) adds a new key to the list at O(key), verifies it, then removes O(old_secret) and checks it is rejected.
  - No secret is returned or logged; results carry fingerprints (first 12 hex digits of the secret's SHA-256).
  - Idempotent with O(rotation_id) (for example the incident id); the state file next to O(secret_file) records that rotation,
    and a second run with the same id reports C(changed=false). Without O(rotation_id) every run rotates.
extends_documentation_fragment:
  - sre.runbooks.postgres
options:
  kind:
    description: What to rotate.
    type: str
    required: true
    choices: [postgres_password, jwt_secret, api_key]
  secret_file:
    description: The consumer's file holding the secret (an env file, the app's YAML/JSON config, or a file with only the secret).
    type: path
    required: true
  format:
    description: How O(secret_file) holds the secret. V(yaml) and V(json) rewrite the whole document (comments in YAML are lost).
    type: str
    choices: [raw, env, yaml, json]
    default: env
  key:
    description:
      - Where the secret is, for O(format=env) a variable name, for V(yaml) / V(json) a dotted path such as V(api.auth.secret_key).
      - For O(kind=api_key), the list of keys (V(api.auth.api_keys)).
    type: str
  value_template:
    description:
      - The value at O(key) built from the secret, for example V(postgresql://{user}:{secret}@db:5432/residency_scheduler) for a
        C(DATABASE_URL). C({user}) is the role (needed by O(strategy=alternating) unless O(user_key) is used).
    type: str
  user_key:
    description: For O(kind=postgres_password), where the role name is kept in the file (env variable or dotted path), if not in O(value_template).
    type: str
  owner:
    description: Owner of the rewritten O(secret_file) (name or uid). Default is the current owner.
    type: str
  group:
    description: Group of the rewritten O(secret_file). Default is the current group.
    type: str
  mode:
    description: Mode of the rewritten O(secret_file), such as V('0600'). Default is the current mode.
    type: str
  restart_units:
    description: systemd units to restart after the file changes (C(systemctl restart)); also after a rollback.
    type: list
    elements: str
    default: []
  reload_units:
    description: systemd units to reload (C(systemctl reload)) after the file changes; also after a rollback.
    type: list
    elements: str
    default: []
  consumer_command:
    description: One more command (argv list, no shell) that makes a consumer pick up the file, such as V([kill, -HUP, "1234"]).
    type: list
    elements: str
  settle:
    description: Seconds to wait after the consumers were restarted before verifying.
    type: float
    default: 1
  verify_url:
    description:
      - URL that proves the consumers work. For O(kind=jwt_secret) it is called with a token signed by the new secret, for
        O(kind=api_key) with the new key in O(verify_header), for O(kind=postgres_password) as is (a health check that uses the database).
      - Polled until it answers O(verify_status) or O(verify_timeout) passes.
    type: str
  verify_method:
    description: HTTP method for O(verify_url).
    type: str
    default: GET
  verify_status:
    description: Status O(verify_url) must answer with the new secret.
    type: int
    default: 200
  reject_status:
    description: Status O(verify_url) must answer with O(old_secret) once it is removed (O(kind=api_key)).
    type: int
    default: 401
  verify_header:
    description: Header that carries an API key.
    type: str
    default: X-API-Key
  verify_timeout:
    description: Seconds to keep polling O(verify_url).
    type: float
    default: 30
  validate_certs:
    description: Verify TLS certificates of O(verify_url).
    type: bool
    default: true
  jwt_claims:
    description: 'Claims of the test token for O(kind=jwt_secret), for example V({"sub": "hdk_1a2b3c4d"}); C(iat) and C(exp) are added.'
    type: dict
  previous_key:
    description: For O(kind=jwt_secret), the list (dotted path) of previous secrets the app still accepts; the old secret is put first.
    type: str
  keep_previous:
    description: How many previous JWT secrets to keep in O(previous_key).
    type: int
    default: 1
  old_secret:
    description: For O(kind=api_key), the key to retire (for example the leaked one). Without it the new key is only added.
    type: str
  new_secret:
    description: Use this secret instead of generating one.
    type: str
  new_secret_file:
    description:
      - For O(kind=api_key), where to write the new key (mode 0600) for the client that needs it; it is never returned.
      - Written before the new key is configured, so whenever the new key is live its owner has it; removed again when the
        rotation fails and is rolled back. Its directory must exist.
      - A run killed part-way leaves the rotation pending in the state file; the next run with the same O(rotation_id)
        drops the key the interrupted run added (by its fingerprint) and completes the rotation with its own new key.
    type: path
  length:
    description: Bytes of randomness in a generated secret.
    type: int
    default: 32
  prefix:
    description: Prefix of a generated API key or password, such as V(hdk_).
    type: str
    default: ""
  role:
    description: For O(kind=postgres_password), the login role (with O(strategy=alternating), one of the pair).
    type: str
  alternate_role:
    description: With O(strategy=alternating), the other role of the pair (same privileges, for example both members of one group role).
    type: str
  strategy:
    description: For O(kind=postgres_password), V(alternating) (two roles take turns, zero downtime) or V(single).
    type: str
    choices: [alternating, single]
    default: alternating
  retire_old:
    description: With O(strategy=alternating), give the previously used role an unknown password once the consumers work with the new one.
    type: bool
    default: true
  rotation_id:
    description: An id for this rotation (an incident id); a rotation already completed with the same id is not repeated.
    type: str
  state_file:
    description: Where the completed O(rotation_id) is recorded (no secrets in it). Default is O(secret_file) with C(.rotation.json) appended.
    type: path
notes:
  - The connection options connect the administrative role that changes passwords (it must be a superuser or have CREATEROLE, and read
    C(pg_authid) to save the old verifier); the new password is tested with a separate login as the rotated role, to the same host,
    port and database.
  - Supports check mode (reports what would happen; generates nothing lasting, touches nothing) and C(--diff) (fingerprints only).
seealso:
  - module: sre.runbooks.pg_terminate
"""

EXAMPLES = r"""
- name: Rotate the scheduler's database password, zero downtime (scheduler_a / scheduler_b take turns)
  sre.runbooks.rotate_credentials:
    kind: postgres_password
    login_unix_socket: /var/run/postgresql
    database: residency_scheduler
    role: scheduler_a
    alternate_role: scheduler_b
    secret_file: /etc/residency-scheduler/backend.env
    key: DATABASE_URL
    value_template: "postgresql://{user}:{secret}@db.internal:5432/residency_scheduler"
    owner: scheduler
    mode: "0600"
    restart_units: [residency-scheduler-backend]
    verify_url: http://127.0.0.1:8000/health
    rotation_id: "{{ incident_id }}"

- name: Rotate the Heart Disease API's JWT secret (old tokens stay valid through previous_secret_keys)
  sre.runbooks.rotate_credentials:
    kind: jwt_secret
    secret_file: /opt/heart-disease/config/config.yaml
    format: yaml
    key: api.auth.secret_key
    previous_key: api.auth.previous_secret_keys
    reload_units: [heart-disease-api]
    verify_url: http://127.0.0.1:18101/models/info
    jwt_claims: {sub: "{{ monitoring_key_id }}"}

- name: Replace a leaked API key
  sre.runbooks.rotate_credentials:
    kind: api_key
    secret_file: /opt/heart-disease/config/config.yaml
    format: yaml
    key: api.auth.api_keys
    old_secret: "{{ leaked_key }}"
    prefix: hdk_
    new_secret_file: /root/partner-api-key.new
    reload_units: [heart-disease-api]
    verify_url: http://127.0.0.1:18101/models/info
"""

RETURN = r"""
kind:
  description: O(kind).
  returned: always
  type: str
secret_fingerprint:
  description: First 12 hex digits of the new secret's SHA-256 (never the secret).
  returned: success
  type: str
  sample: 3f9a0c1b7d2e
previous_fingerprint:
  description: Fingerprint of the secret the file held before (not for O(kind=api_key)).
  returned: always
  type: str
role:
  description: For O(kind=postgres_password), the role the consumers use now.
  returned: when O(kind=postgres_password)
  type: str
previous_role:
  description: The role the consumers used before.
  returned: when O(kind=postgres_password)
  type: str
retired_old:
  description: Whether the old secret was retired (old role's password replaced, old API key removed and rejected).
  returned: success
  type: bool
rotated_at:
  description: When the rotation completed (ISO 8601).
  returned: success
  type: str
steps:
  description: What was done, in order, including rollback steps after a failure.
  returned: always
  type: list
  elements: str
queries:
  description: SQL run, passwords as C(********).
  returned: always
  type: list
  elements: str
consumers:
  description: The consumer commands run after each change of the file.
  returned: always
  type: list
  elements: str
rolled_back:
  description: The rotation failed and was undone.
  returned: failure
  type: bool
old_secret_works:
  description: After a rollback, whether the old secret was checked to work again (V(null) when nothing can check it).
  returned: failure
  type: bool
"""

import grp
import pwd

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.sre.runbooks.plugins.module_utils._postgres import (
    PSYCOPG_IMPORT_ERROR, PostgresError, connect, connection_kwargs, postgres_argument_spec,
)
from ansible_collections.sre.runbooks.plugins.module_utils._rotate import Rotation, RotationError, RotationFailed


def _id(value, lookup, option):
    if value is None:
        return None
    if str(value).isdigit():
        return int(value)
    try:
        return lookup(value)
    except KeyError:
        raise ValueError(f"{option}: no such {option} {value!r}") from None


def options_from_params(params: dict) -> dict:
    """Validated options; raises ValueError naming the option."""
    kind = params["kind"]
    options = dict(params)
    if kind == "postgres_password":
        if not params["role"]:
            raise ValueError("role: required with kind=postgres_password")
        if params["strategy"] == "alternating":
            if not params["alternate_role"] or params["alternate_role"] == params["role"]:
                raise ValueError("alternate_role: strategy=alternating needs a second role different from role")
            if not params["user_key"] and "{user}" not in (params["value_template"] or ""):
                raise ValueError("user_key: strategy=alternating needs the role name in the file: set user_key or use {user} in value_template")
    elif kind == "api_key" and params["format"] not in ("yaml", "json"):
        raise ValueError("format: kind=api_key needs a yaml or json list of keys")
    if kind == "jwt_secret" and params["verify_url"] and not params["jwt_claims"]:
        raise ValueError("jwt_claims: required with verify_url for kind=jwt_secret (the claims the app expects in a token)")
    if params["format"] != "raw" and not params["key"]:
        raise ValueError(f"key: required with format={params['format']}")
    if params["length"] < 16:
        raise ValueError(f"length: at least 16 bytes of randomness, got {params['length']}")
    if params["keep_previous"] < 0:
        raise ValueError("keep_previous: must not be negative")
    if params["verify_timeout"] < 0 or params["settle"] < 0:
        raise ValueError("verify_timeout / settle: must not be negative")
    if params["mode"] is not None:
        try:
            options["mode_int"] = int(str(params["mode"]), 8)
        except ValueError:
            raise ValueError(f"mode: expected an octal mode such as 0600, got {params['mode']!r}") from None
    options["owner_id"] = _id(params["owner"], lambda v: pwd.getpwnam(v).pw_uid, "owner")
    options["group_id"] = _id(params["group"], lambda v: grp.getgrnam(v).gr_gid, "group")
    return options


def main() -> None:
    spec = postgres_argument_spec()
    spec.update({
        "kind": {"type": "str", "required": True, "choices": ["postgres_password", "jwt_secret", "api_key"]},
        "secret_file": {"type": "path", "required": True},
        "format": {"type": "str", "default": "env", "choices": ["raw", "env", "yaml", "json"]},
        "key": {"type": "str", "no_log": False},
        "value_template": {"type": "str"},
        "user_key": {"type": "str", "no_log": False},
        "owner": {"type": "str"},
        "group": {"type": "str"},
        "mode": {"type": "str"},
        "restart_units": {"type": "list", "elements": "str", "default": []},
        "reload_units": {"type": "list", "elements": "str", "default": []},
        "consumer_command": {"type": "list", "elements": "str"},
        "settle": {"type": "float", "default": 1},
        "verify_url": {"type": "str"},
        "verify_method": {"type": "str", "default": "GET"},
        "verify_status": {"type": "int", "default": 200},
        "reject_status": {"type": "int", "default": 401},
        "verify_header": {"type": "str", "default": "X-API-Key"},
        "verify_timeout": {"type": "float", "default": 30},
        "validate_certs": {"type": "bool", "default": True},
        "jwt_claims": {"type": "dict"},
        "previous_key": {"type": "str", "no_log": False},
        "keep_previous": {"type": "int", "default": 1},
        "old_secret": {"type": "str", "no_log": True},
        "new_secret": {"type": "str", "no_log": True},
        "new_secret_file": {"type": "path"},
        "length": {"type": "int", "default": 32},
        "prefix": {"type": "str", "default": ""},
        "role": {"type": "str"},
        "alternate_role": {"type": "str"},
        "strategy": {"type": "str", "default": "alternating", "choices": ["alternating", "single"]},
        "retire_old": {"type": "bool", "default": True},
        "rotation_id": {"type": "str"},
        "state_file": {"type": "path"},
    })
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    try:
        options = options_from_params(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    admin = None
    kwargs = None
    if options["kind"] == "postgres_password":
        if PSYCOPG_IMPORT_ERROR:
            module.fail_json(msg=missing_required_lib("psycopg (version 3)"), exception=PSYCOPG_IMPORT_ERROR)
        kwargs = connection_kwargs(module.params)
        kwargs["dbname"] = module.params["database"]

        def admin():
            return connect(module.params, read_only=False)

    rotation = Rotation(options, admin, kwargs, module.no_log_values.add)
    try:
        result = rotation.run(module.check_mode)
    except RotationFailed as exc:
        for warning in exc.result.pop("warnings", None) or []:
            module.warn(warning)
        module.fail_json(msg=f"{exc}; rolled back", **({"option": exc.option} if exc.option else {}), **exc.result)
    except RotationError as exc:
        module.fail_json(msg=str(exc), **({"option": exc.option} if exc.option else {}))
    except PostgresError as exc:
        module.fail_json(msg=str(exc), **({"option": exc.option} if exc.option else {}))
    if not module._diff:  # pylint: disable=protected-access
        result.pop("diff", None)
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
