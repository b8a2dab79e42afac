# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credential rotation: generate, stage, verify, switch consumers, verify again, roll back on failure.

The order is what makes it safe: the new secret is made valid *next to* the old one and proven to work
before the consumers are moved to it, and the old one is retired only after the consumers are proven to
work with the new one. When a step fails, everything done so far is undone in reverse order (consumer
file back, consumers reloaded, database role password verifier back) and the old secret is checked to
work again.

* ``postgres_password`` — strategy ``alternating``: two login roles take turns; the idle one gets the new
  password, the consumer file is switched to it, and the previously used role is retired (password set to
  an unknown random value) only afterwards. Strategy ``single``: one role; the old SCRAM verifier is kept
  and put back if anything fails. Passwords reach the server only as SCRAM verifiers computed by libpq,
  never in clear text (so ``log_statement`` cannot leak them).
* ``jwt_secret`` — new signing secret; the old one moves to a "previous" list the app still accepts,
  so tokens issued before stay valid for their lifetime; verified with a token signed by the new secret.
* ``api_key`` — the new key is added next to the old, verified, then the old key is removed and checked
  to be rejected.

No secret is ever returned: results carry fingerprints (the first 12 hex digits of a SHA-256).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.error import HTTPError, URLError

from ansible_collections.sre.runbooks.plugins.module_utils._files import atomic_write as write_file_atomically

try:
    import yaml
except ImportError:  # only needed for format=yaml, reported then
    yaml = None


class RotationError(Exception):
    """A rotation step failed; ``option`` is the module option to look at."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


def fingerprint(secret: str | None) -> str | None:
    return hashlib.sha256(secret.encode()).hexdigest()[:12] if secret else None


def generate(kind: str, length: int, prefix: str = "") -> str:
    """A new secret: URL-safe (it may end up in a connection URL), ``length`` random bytes of entropy."""
    if kind == "jwt_secret":
        return secrets.token_hex(length)
    return prefix + secrets.token_urlsafe(length)


# -- the consumer's secret file ---------------------------------------------------------------------

class SecretFile:
    """One value (and optionally a user name) inside a file: raw, env (KEY=value), yaml or json (dotted key)."""

    def __init__(self, path: str, fmt: str, key: str | None, template: str | None = None, user_key: str | None = None):
        self.path = Path(path)
        self.fmt = fmt
        self.key = key
        self.template = template
        self.user_key = user_key
        if fmt != "raw" and not key:
            raise RotationError(f"key: required with format={fmt}", option="key")
        if fmt == "yaml" and yaml is None:
            raise RotationError("format: format=yaml needs PyYAML on the target", option="format")
        if template is not None and "{secret}" not in template:
            raise RotationError("value_template: must contain {secret}", option="value_template")
        self.original: bytes | None = None
        self.stat: os.stat_result | None = None

    def load(self) -> None:
        try:
            self.original = self.path.read_bytes()
            self.stat = self.path.stat()
        except FileNotFoundError:
            raise RotationError(f"secret_file: {self.path} does not exist", option="secret_file") from None

    # documents
    def _document(self) -> Any:
        text = self.original.decode("utf-8")
        try:
            if self.fmt == "yaml":
                return yaml.safe_load(text) or {}
            if self.fmt == "json":
                return json.loads(text)
        except (ValueError, yaml.YAMLError if yaml else ValueError) as exc:
            raise RotationError(f"secret_file: {self.path} is not valid {self.fmt}: {type(exc).__name__}", option="secret_file") from None
        return text

    def _walk(self, document: Any, dotted: str, create: bool = False) -> tuple[dict, str]:
        parts = dotted.split(".")
        node = document
        for part in parts[:-1]:
            if not isinstance(node, dict) or (part not in node and not create):
                raise RotationError(f"key: {dotted} not found in {self.path}", option="key")
            node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RotationError(f"key: {dotted} not found in {self.path}", option="key")
        return node, parts[-1]

    def _get_raw_value(self, key: str) -> Any:
        if self.fmt == "raw":
            return self.original.decode("utf-8").rstrip("\n")
        document = self._document()
        if self.fmt == "env":
            match = re.search(rf"^\s*(?:export\s+)?{re.escape(key)}=(.*)$", document, re.M)
            if not match:
                return None
            value = match.group(1).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            return value
        node, last = self._walk(document, key)
        return node.get(last)

    def _template_parts(self, value: str | None) -> dict[str, str]:
        if value is None or not self.template:
            return {"secret": value} if value is not None else {}
        pattern = re.escape(self.template).replace(r"\{user\}", r"(?P<user>[^:@/\s]+)").replace(r"\{secret\}", r"(?P<secret>[^@\s]*)")
        match = re.fullmatch(pattern, value)
        if not match:
            raise RotationError(f"value_template: the current value of {self.key} in {self.path} does not have the template's shape",
                                option="value_template")
        return match.groupdict()

    def current(self) -> dict[str, str | None]:
        """``{"secret": ..., "user": ...}`` as the file holds them now."""
        raw = self._get_raw_value(self.key)
        if raw is not None and not isinstance(raw, str):
            if isinstance(raw, list):
                return {"secret": None, "list": [str(item) for item in raw]}
            raw = str(raw)
        parts = self._template_parts(raw)
        if self.user_key:
            user = self._get_raw_value(self.user_key)
            parts["user"] = str(user) if user is not None else None
        return parts

    def current_list(self, key: str) -> list[str]:
        value = self._get_raw_value(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise RotationError(f"previous_key: {key} in {self.path} must be a list", option="previous_key")
        return [str(item) for item in value]

    def render(self, updates: dict[str, Any]) -> bytes:
        """The file's new content with ``updates`` (key → value; lists allowed in yaml/json) applied, rest unchanged."""
        if self.fmt == "raw":
            return (str(updates[self.key or ""]) + "\n").encode()
        document = self._document()
        if self.fmt == "env":
            for key, value in updates.items():
                line = f"{key}={value}"
                pattern = re.compile(rf"^(\s*(?:export\s+)?){re.escape(key)}=.*$", re.M)
                if pattern.search(document):
                    document = pattern.sub(lambda m, line=line: m.group(1) + line, document, count=1)
                else:
                    document = document + ("" if document.endswith("\n") or not document else "\n") + line + "\n"
            return document.encode()
        for key, value in updates.items():
            node, last = self._walk(document, key, create=True)
            node[last] = value
        if self.fmt == "yaml":
            return yaml.safe_dump(document, sort_keys=False).encode()
        return (json.dumps(document, indent=2) + "\n").encode()

    def value(self, secret: str, user: str | None) -> str:
        return self.template.format(secret=secret, user=user or "") if self.template else secret

    def write(self, content: bytes, owner: int | None = None, group: int | None = None, mode: int | None = None) -> None:
        """Atomic: a temporary file in the same directory, owner and mode set before the rename."""
        uid = owner if owner is not None else (self.stat.st_uid if self.stat else -1)
        gid = group if group is not None else (self.stat.st_gid if self.stat else -1)
        perm = mode if mode is not None else (self.stat.st_mode & 0o7777 if self.stat else 0o600)
        write_file_atomically(self.path, content, perm, uid, gid)

    def restore(self) -> None:
        self.write(self.original, mode=self.stat.st_mode & 0o7777 if self.stat else None)


# -- consumers --------------------------------------------------------------------------------------

def consumer_commands(restart_units: list[str], reload_units: list[str], commands: list[list[str]]) -> list[list[str]]:
    argv = [["systemctl", "restart", unit] for unit in restart_units]
    argv += [["systemctl", "reload", unit] for unit in reload_units]
    return argv + [list(command) for command in commands]


def run_consumers(argvs: list[list[str]], settle: float) -> None:
    for argv in argvs:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RotationError(f"consumers: {' '.join(argv)} failed: {exc}", option="restart_units") from None
        if proc.returncode != 0:
            raise RotationError(f"consumers: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-300:]}",
                                option="restart_units")
    if argvs and settle > 0:
        time.sleep(settle)


# -- verification -----------------------------------------------------------------------------------

def jwt_hs256(secret: str, claims: dict[str, Any], lifetime: int = 120) -> str:
    """A compact HS256 JWT (RFC 7519) with ``iat``/``exp`` added: enough to prove a signing secret."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    now = int(time.time())
    body = {"iat": now, "exp": now + lifetime, **claims}
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(body).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def http_status(url: str, headers: dict[str, str], method: str = "GET", timeout: float = 10.0, validate_certs: bool = True) -> int | str:
    from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel
    try:
        response = open_url(url, method=method, headers=headers, timeout=timeout, validate_certs=validate_certs,
                            follow_redirects="none")
        return response.status
    except HTTPError as exc:
        return exc.code
    except (URLError, OSError) as exc:
        return f"unreachable ({type(exc).__name__})"


def poll(check: Callable[[], tuple[bool, str]], timeout: float, interval: float = 0.5) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = check()
        if ok or time.monotonic() >= deadline:
            return ok, detail
        time.sleep(interval)


# -- PostgreSQL -------------------------------------------------------------------------------------

def scram_verifier(conn, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password`` for ``role``, computed client-side by libpq."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def role_verifier(conn, role: str) -> str | None:
    row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    if row is None:
        raise RotationError(f"role: role {role!r} does not exist", option="role")
    return row[0]


def set_role_password(conn, role: str, verifier: str | None) -> None:
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    if verifier is None:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(role)))
    else:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))


def can_login(connect_kwargs: dict[str, Any], role: str, password: str | None) -> tuple[bool, str]:
    import psycopg  # pylint: disable=import-outside-toplevel
    if not password:
        return False, "no password"
    kwargs = dict(connect_kwargs, user=role, password=password)
    try:
        with psycopg.connect(**kwargs) as conn:
            conn.execute("SELECT 1")
        return True, "login ok"
    except psycopg.Error as exc:
        message = " ".join(str(exc).split()).replace(password, "********")
        return False, f"login failed: {message[:200]}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the rotation -----------------------------------------------------------------------------------

class Rotation:
    """One rotation run. ``options`` are the module's validated parameters; ``connect_kwargs`` the libpq ones."""

    def __init__(self, options: dict[str, Any], connect_admin: Callable[[], Any] | None, connect_kwargs: dict[str, Any] | None,
                 hide: Callable[[str], None]):
        self.o = options
        self.connect_admin = connect_admin
        self.connect_kwargs = connect_kwargs or {}
        self.hide = hide  # adds a value to the module's no_log_values
        self.file = SecretFile(options["secret_file"], options["format"], options["key"], options.get("value_template"),
                               options.get("user_key"))
        self.undo: list[tuple[str, Callable[[], None]]] = []
        self.steps: list[str] = []
        self.queries: list[str] = []
        self.warnings: list[str] = []
        self.consumers = consumer_commands(options["restart_units"], options["reload_units"],
                                           [options["consumer_command"]] if options.get("consumer_command") else [])

    # state file: makes a rotation with a rotation_id happen once
    def _state_path(self) -> Path:
        return Path(self.o.get("state_file") or f"{self.o['secret_file']}.rotation.json")

    def _read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self._state_path().read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def _write_state(self, state: dict[str, Any]) -> None:
        write_file_atomically(self._state_path(), json.dumps(state, indent=2, sort_keys=True), 0o600)

    def plan(self, pending: dict[str, Any] | None = None) -> dict[str, Any]:
        """What to rotate. ``pending``: the state an interrupted run of the same rotation left (its new key's fingerprint)."""
        self.file.load()
        current = self.file.current()
        kind = self.o["kind"]
        plan: dict[str, Any] = {"kind": kind, "current": current}
        for value in (current.get("secret"), *(current.get("list") or [])):
            if value:
                self.hide(value)
        if kind == "api_key" and pending and pending.get("fingerprint") and current.get("list") is not None:
            # The interrupted run's new key may be live, but its owner never got it: it goes, the new one replaces it.
            kept = [k for k in current["list"] if fingerprint(k) != pending["fingerprint"]]
            plan["dropped_interrupted"] = len(current["list"]) - len(kept)
            current["list"] = kept
        if kind == "postgres_password":
            if self.o["strategy"] == "alternating":
                roles = [self.o["role"], self.o["alternate_role"]]
                user = current.get("user")
                if user not in roles:
                    raise RotationError(f"role: the consumer file names role {user!r}, which is neither role nor alternate_role "
                                        f"({', '.join(roles)})", option="role")
                plan["old_role"], plan["new_role"] = user, roles[1 - roles.index(user)]
            else:
                plan["old_role"] = plan["new_role"] = self.o["role"]
        elif kind == "api_key":
            keys = current.get("list")
            if keys is None:
                raise RotationError(f"key: {self.o['key']} in {self.o['secret_file']} must be a list of API keys", option="key")
            if self.o.get("old_secret") and self.o["old_secret"] not in keys and not (pending and pending.get("fingerprint")):
                # (after an interrupted run of this rotation, the old key may be retired already: nothing left to retire)
                raise RotationError("old_secret: the key to retire is not in the consumer file", option="old_secret")
        elif current.get("secret") is None:
            raise RotationError(f"key: {self.o['key']} not found in {self.o['secret_file']}", option="key")
        previous = self.file.current_list(self.o["previous_key"]) if kind == "jwt_secret" and self.o.get("previous_key") else []
        for value in (current.get("secret"), self.o.get("old_secret"), *(current.get("list") or []), *previous):
            if value:
                self.hide(value)
        return plan

    def describe(self, plan: dict[str, Any], new_fp: str) -> dict[str, str]:
        cur = plan["current"]
        file_line = f"{self.o['secret_file']} [{self.o['key']}]"
        if plan["kind"] == "postgres_password":
            before = f"{file_line}: role {plan['old_role']}, password fp {fingerprint(cur.get('secret'))}\n"
            after = f"{file_line}: role {plan['new_role']}, password fp {new_fp} (new)\n"
            if self.o["strategy"] == "alternating" and self.o["retire_old"]:
                after += f"role {plan['old_role']}: password retired\n"
        elif plan["kind"] == "api_key":
            keys = cur["list"]
            before = f"{file_line}: keys {', '.join(fingerprint(k) for k in keys)}\n"
            kept = [k for k in keys if k != self.o.get("old_secret")]
            after = f"{file_line}: keys {', '.join([fingerprint(k) for k in kept] + [new_fp + ' (new)'])}\n"
        else:
            before = f"{file_line}: secret fp {fingerprint(cur.get('secret'))}\n"
            previous_note = f", previous fp {fingerprint(cur.get('secret'))} kept in {self.o['previous_key']}" if self.o.get("previous_key") else ""
            after = f"{file_line}: secret fp {new_fp} (new){previous_note}\n"
        if self.consumers:
            after += "".join(f"then: {' '.join(argv)}\n" for argv in self.consumers)
        return {"before": before, "after": after}

    # steps
    def _consumers(self, why: str) -> None:
        if self.consumers:
            run_consumers(self.consumers, self.o["settle"])
            self.steps.append(f"consumers {why}: {'; '.join(' '.join(a) for a in self.consumers)}")

    def _write(self, updates: dict[str, Any], why: str) -> None:
        self.file.write(self.file.render(updates), self.o.get("owner_id"), self.o.get("group_id"), self.o.get("mode_int"))
        self.steps.append(f"wrote {self.o['secret_file']} ({why})")

    def _verify_http(self, headers: dict[str, str], expect: int, what: str) -> None:
        url = self.o.get("verify_url")
        if not url:
            return
        ok, detail = poll(lambda: self._status_is(url, headers, expect), self.o["verify_timeout"])
        if not ok:
            raise RotationError(f"verify_url: {what}: expected HTTP {expect} from {url}, got {detail}", option="verify_url")
        self.steps.append(f"verified {what}: HTTP {expect} from {url}")

    def _status_is(self, url: str, headers: dict[str, str], expect: int) -> tuple[bool, str]:
        status = http_status(url, headers, self.o["verify_method"], validate_certs=self.o["validate_certs"])
        return status == expect, str(status)

    def _headers(self, secret: str) -> dict[str, str]:
        kind = self.o["kind"]
        if kind == "jwt_secret":
            return {"Authorization": "Bearer " + jwt_hs256(secret, self.o.get("jwt_claims") or {})}
        if kind == "api_key":
            return {self.o["verify_header"]: secret}
        return {}

    def execute(self, plan: dict[str, Any], new: str) -> dict[str, Any]:
        kind = self.o["kind"]
        cur = plan["current"]
        conn = None
        try:
            if kind == "postgres_password":
                conn = self.connect_admin()
                new_role, old_role = plan["new_role"], plan["old_role"]
                saved = role_verifier(conn, new_role)
                set_role_password(conn, new_role, scram_verifier(conn, new_role, new))
                self.queries.append(f"ALTER ROLE {new_role} PASSWORD '********'")
                self.undo.append((f"put back role {new_role}'s previous password verifier", lambda: set_role_password(conn, new_role, saved)))
                ok, detail = can_login(self.connect_kwargs, new_role, new)
                if not ok:
                    raise RotationError(f"role: the new password of {new_role} does not work: {detail}", option="role")
                self.steps.append(f"verified login as {new_role} with the new password")
                updates = {self.o["key"]: self.file.value(new, new_role)}
                if self.o.get("user_key"):
                    updates[self.o["user_key"]] = new_role
            elif kind == "jwt_secret":
                updates = {self.o["key"]: new}
                if self.o.get("previous_key"):
                    previous = self.file.current_list(self.o["previous_key"])
                    keep = self.o["keep_previous"]
                    updates[self.o["previous_key"]] = ([cur["secret"]] + [p for p in previous if p != cur["secret"]])[:keep] if keep else []
            else:
                updates = {self.o["key"]: cur["list"] + [new]}
            self.undo.append((f"put back {self.o['secret_file']} and reload the consumers with it", self._restore_file))
            self._write(updates, "new secret")
            self._consumers("reloaded")
            self._verify_http(self._headers(new), self.o["verify_status"], "the consumers work with the new secret")
            retired = False
            if kind == "postgres_password" and self.o["strategy"] == "alternating" and self.o["retire_old"]:
                set_role_password(conn, plan["old_role"], scram_verifier(conn, plan["old_role"], secrets.token_urlsafe(32)))
                self.queries.append(f"ALTER ROLE {plan['old_role']} PASSWORD '********'")
                self.steps.append(f"retired the old password of {plan['old_role']}")
                retired = True
            elif kind == "api_key" and self.o.get("old_secret"):
                self._write({self.o["key"]: [k for k in cur["list"] if k != self.o["old_secret"]] + [new]}, "old key removed")
                self._consumers("reloaded")
                self._verify_http(self._headers(new), self.o["verify_status"], "the new key still works")
                self._verify_http(self._headers(self.o["old_secret"]), self.o["reject_status"], "the old key is rejected")
                retired = True
            return {"retired_old": retired}
        except BaseException:
            self.rollback()
            raise
        finally:
            if conn is not None:
                conn.close()

    def _restore_file(self) -> None:
        self.file.restore()
        self._consumers("reloaded after rollback")

    def rollback(self) -> None:
        for what, action in reversed(self.undo):
            try:
                action()
                self.steps.append(f"rolled back: {what}")
            except Exception as exc:  # keep undoing the rest; report what could not be undone
                self.warnings.append(f"rollback step failed ({what}): {type(exc).__name__}: {exc}")
        self.undo = []

    def old_still_works(self, plan: dict[str, Any]) -> bool | None:
        """After a rollback: does the old secret work again? None when there is no way to tell."""
        cur = plan["current"]
        if self.o["kind"] == "postgres_password":
            return can_login(self.connect_kwargs, plan["old_role"], cur.get("secret"))[0]
        if not self.o.get("verify_url"):
            return None
        old = cur.get("secret") if self.o["kind"] == "jwt_secret" else (self.o.get("old_secret") or (cur.get("list") or [None])[0])
        if not old:
            return None
        return poll(lambda: self._status_is(self.o["verify_url"], self._headers(old), self.o["verify_status"]), self.o["verify_timeout"])[0]

    def run(self, check_mode: bool) -> dict[str, Any]:
        state = self._read_state()
        rotation_id = self.o.get("rotation_id")
        pending = state if state.get("status") == "pending" and state.get("rotation_id") == rotation_id else None
        plan = self.plan(pending)
        result: dict[str, Any] = {"kind": self.o["kind"], "secret_file": self.o["secret_file"], "rotation_id": rotation_id,
                                  "consumers": [" ".join(a) for a in self.consumers]}
        if plan.get("new_role"):
            result.update({"role": plan["new_role"], "previous_role": plan["old_role"]})
        if rotation_id and state.get("rotation_id") == rotation_id and state.get("status") == "done":
            result.update({"changed": False, "rotated_at": state.get("rotated_at"), "secret_fingerprint": state.get("fingerprint"),
                           "msg": f"rotation {rotation_id} already done at {state.get('rotated_at')}", "steps": [], "queries": []})
            result.pop("role", None)
            result.pop("previous_role", None)
            if state.get("role"):
                result["role"] = state["role"]
            return result
        new = self.o.get("new_secret") or generate(self.o["kind"], self.o["length"], self.o.get("prefix") or "")
        self.hide(new)
        new_fp = fingerprint(new)
        result["diff"] = self.describe(plan, new_fp)
        result["previous_fingerprint"] = fingerprint(plan["current"].get("secret")) if self.o["kind"] != "api_key" else None
        if check_mode:
            result.update({"changed": True, "secret_fingerprint": None, "steps": [], "queries": [],
                           "msg": f"would rotate the {self.o['kind']} in {self.o['secret_file']}"})
            return result
        # Written before the first change: a run killed part-way leaves this, and the rerun knows which key was its.
        self._write_state({"rotation_id": rotation_id, "status": "pending", "started_at": now_iso(), "kind": self.o["kind"],
                           "fingerprint": new_fp})
        if plan.get("dropped_interrupted"):
            self.steps.append(f"dropped the new key of an interrupted run of this rotation (fingerprint {pending['fingerprint']})")
        copy = self.o.get("new_secret_file")
        try:
            # The owner's copy first: whenever the new secret is live (even in a run killed part-way), its owner has it,
            # and a copy that cannot be written stops the rotation before anything changed.
            if copy:
                SecretFile(copy, "raw", None).write((new + "\n").encode(), mode=0o600)
                self.steps.append(f"wrote the new secret to {copy} (mode 0600)")
            outcome = self.execute(plan, new)
        except Exception as exc:  # any failure: already rolled back by execute(); report it with how far it got
            if copy and any(step.startswith("wrote the new secret") for step in self.steps):
                Path(copy).unlink(missing_ok=True)
                self.steps.append(f"removed {copy} (the new secret is not in use)")
            # Rolled back: the state file goes back to what it was (no "pending" left to mislead a rerun).
            if state:
                self._write_state(state)
            else:
                self._state_path().unlink(missing_ok=True)
            works = self.old_still_works(plan)
            message = str(exc) if isinstance(exc, RotationError) else f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            raise RotationFailed(message, getattr(exc, "option", None), {
                **result, "changed": False, "rolled_back": True, "old_secret_works": works, "steps": self.steps,
                "queries": self.queries, "warnings": self.warnings}) from None
        rotated_at = now_iso()
        self._write_state({"rotation_id": rotation_id, "rotated_at": rotated_at, "kind": self.o["kind"], "fingerprint": new_fp,
                           "status": "done", **({"role": plan["new_role"]} if plan.get("new_role") else {})})
        result.update({"changed": True, "secret_fingerprint": new_fp, "rotated_at": rotated_at, "steps": self.steps,
                       "queries": self.queries, "warnings": self.warnings, "retired_old": outcome["retired_old"],
                       "msg": f"rotated the {self.o['kind']} in {self.o['secret_file']} (fingerprint {new_fp})"})
        return result


class RotationFailed(Exception):
    """The rotation failed and was rolled back; ``result`` says how far it got."""

    def __init__(self, message: str, option: str | None, result: dict[str, Any]):
        super().__init__(message)
        self.option = option
        self.result = result
