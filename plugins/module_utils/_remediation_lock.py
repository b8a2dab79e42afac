# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lease lock for a remediation: two runs of the same remediation on the same target take turns.

The lock lives on the host where the remediation acts, one file per name in a private directory:

* ``<name>.lock`` — the holder (owner, pid, host identity, acquired and expiry times), present while held;
* ``<name>.history`` — the last holders that let go (released, or taken over when stale), newest last,
  so the next holder can tell that someone else acted since it looked (``others``);
* ``<name>.guard`` — an empty file, ``flock``-ed for the few milliseconds a state change takes.

Every change is made under the guard's exclusive ``flock`` and written with a rename, so two contenders never
both see the lock free and a reader never sees half a record. The lock outlives the process that took it (a
remediation spans several tasks): it is a lease, held until its owner releases it, its ``ttl`` runs out, or the
process named as its holder on this same host has ended.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import socket
import stat
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from ansible_collections.sre.runbooks.plugins.module_utils._files import atomic_write

DEFAULT_PATH = "/run/lock/sre-runbooks"
HISTORY_KEEP = 20
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class LockError(Exception):
    """A lock that cannot be taken or given back; ``option`` names the option at fault, ``details`` go in the result."""

    def __init__(self, message: str, option: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.option = option
        self.details = details


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def parse_since(value: Any) -> float | None:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC) or epoch seconds as epoch seconds; None if empty."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise LockError(f"since: {value!r} is not an ISO 8601 time or epoch seconds", option="since") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def validate(params: dict[str, Any]) -> str | None:
    """The first problem with the options, as ``option: what is wrong``; None when they are fine."""
    name = params.get("name") or ""
    if not NAME_PATTERN.match(name) or ".." in name:
        return (f"name: {name!r} is not a lock name: 1 to 128 letters, digits and . _ : @ + = -, starting with a letter or digit, "
                "no '..' and no '/' (for example high_error_rate:release)")
    owner = params.get("owner") or ""
    if not owner.strip() or len(owner) > 256 or _CONTROL.search(owner):
        return "owner: must be 1 to 256 printable characters (the incident or run that holds the lock)"
    for option in ("wait", "ttl"):
        value = params.get(option)
        if value is not None and (math.isnan(value) or value < 0 or value > 7 * 86400):  # NaN, negative, over a week
            return f"{option}: {value} is not between 0 and 604800 seconds"
    if params.get("ttl") == 0:
        return "ttl: must be more than 0 seconds (a lease that has already run out protects nothing)"
    pid = params.get("pid")
    if pid is not None and pid <= 0:
        return f"pid: {pid} is not a process id"
    note = params.get("note") or ""
    if len(note) > 1000:
        return "note: at most 1000 characters"
    return None


def host_identity() -> str:
    """This machine and PID namespace: a recorded pid is only checked where it means the same process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        pid_ns = os.stat("/proc/self/ns/pid").st_ino
        return f"{boot}/{pid_ns}"
    except OSError:
        return f"{socket.gethostname()}/unknown"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM  # exists, belongs to someone else
    return True


class RemediationLock:
    """One named lock in one directory. ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(self, directory: str, name: str, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.directory = Path(directory)
        self.name = name
        self.clock = clock
        self.sleep = sleep
        self.lock_file = self.directory / f"{name}.lock"
        self.history_file = self.directory / f"{name}.history"
        self.guard_file = self.directory / f"{name}.guard"
        self.identity = host_identity()

    # ------------------------------------------------------------------ files

    def _check_directory(self, create: bool) -> bool:
        """Whether the directory exists (created 0700 when ``create``); a symlink or a non-directory is refused."""
        try:
            info = os.lstat(self.directory)
        except FileNotFoundError:
            if not create:
                return False
            try:
                os.makedirs(self.directory, mode=0o700)
            except FileExistsError:
                pass
            except OSError as exc:
                raise LockError(f"path: cannot create the lock directory {self.directory}: {exc.strerror}", option="path") from None
            os.chmod(self.directory, 0o700)  # makedirs' mode is masked by the umask
            return True
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise LockError(f"path: {self.directory} is not a directory (a symlink or a file is refused)", option="path")
        return True

    @contextmanager
    def _guard(self) -> Iterator[None]:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.guard_file, flags, 0o600)
        except OSError as exc:
            raise LockError(f"path: cannot open {self.guard_file}: {exc.strerror}", option="path") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _read_json(self, path: Path) -> Any:
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"unreadable": True}

    def holder(self, ttl: float = 0) -> dict[str, Any] | None:
        """The current holder record, or None. An unreadable record is held for ``ttl`` from the file's change time."""
        record = self._read_json(self.lock_file)
        if record is None:
            return None
        if not isinstance(record, dict) or record.get("unreadable") or "owner" not in record:
            try:
                since = os.stat(self.lock_file).st_mtime
            except FileNotFoundError:
                return None
            return {"owner": "unknown (unreadable lock record)", "acquired_ts": since, "acquired_at": iso(since),
                    "expires_ts": since + ttl, "expires_at": iso(since + ttl), "unreadable": True}
        return record

    def history(self) -> list[dict[str, Any]]:
        records = self._read_json(self.history_file)
        return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []

    def _append_history(self, entry: dict[str, Any]) -> None:
        records = (self.history() + [entry])[-HISTORY_KEEP:]
        atomic_write(self.history_file, json.dumps(records, indent=1, sort_keys=True) + "\n", 0o600)

    # ------------------------------------------------------------------ decisions

    def stale_reason(self, holder: dict[str, Any], now: float) -> str | None:
        """Why ``holder`` no longer holds the lock (lease over, process gone), or None while it does."""
        if now >= float(holder.get("expires_ts") or 0):
            return f"its lease ran out at {holder.get('expires_at')}"
        pid = holder.get("pid")
        if pid and holder.get("host_id") == self.identity and not pid_alive(int(pid)):
            return f"its process {pid} on this host has ended"
        return None

    @staticmethod
    def public(holder: dict[str, Any] | None, now: float | None = None) -> dict[str, Any] | None:
        """What a result shows of a holder record."""
        if holder is None:
            return None
        out = {k: holder.get(k) for k in ("owner", "pid", "host", "acquired_at", "expires_at", "note") if holder.get(k) is not None}
        if now is not None and holder.get("acquired_ts") is not None:
            out["held_seconds"] = round(max(0.0, now - float(holder["acquired_ts"])), 1)
        if "released_at" in holder:
            out["released_at"] = holder["released_at"]
        if "released_by" in holder:
            out["released_by"] = holder["released_by"]
        return out

    def others_since(self, owner: str, since: float | None) -> list[dict[str, Any]]:
        """Other owners who let go of the lock after ``since`` (they may have acted on the target since then)."""
        if since is None:
            return []
        return [self.public(h) for h in self.history()
                if h.get("owner") != owner and float(h.get("released_ts") or 0) >= since]

    # ------------------------------------------------------------------ operations

    def acquire(self, owner: str, wait: float, ttl: float, pid: int | None = None, note: str = "",
                since: float | None = None, check_mode: bool = False, poll: float = 0.1) -> dict[str, Any]:
        started = self.clock()
        deadline = started + wait
        first_holder: dict[str, Any] | None = None
        delay = poll
        exists = self._check_directory(create=not check_mode)
        while True:
            now = self.clock()
            if not exists:  # check mode, no directory yet: nothing is held
                return self._result(changed=True, acquired=False, msg=f"would create {self.directory} and take {self.name}",
                                    holder=None, waited=0.0, took_over=None, previous=None, others=[], contended=False)
            with self._guard():
                holder = self.holder(ttl)
                took_over = None
                if holder is not None and holder.get("owner") != owner:
                    reason = self.stale_reason(holder, now)
                    if reason is None:
                        first_holder = first_holder or holder
                        if check_mode or now >= deadline:
                            waited = round(now - started, 2)
                            if check_mode:
                                return self._result(
                                    changed=True, acquired=False, holder=self.public(holder, now), waited=0.0, took_over=None,
                                    previous=self._previous(), others=self.others_since(owner, since), contended=True,
                                    msg=f"would wait up to {wait:g} s for {holder.get('owner')} (holding {self.name} since "
                                        f"{holder.get('acquired_at')}), then take it")
                            raise LockError(
                                f"lock {self.name} in {self.directory} is held by {holder.get('owner')}"
                                f"{' (pid ' + str(holder['pid']) + ' on ' + str(holder.get('host')) + ')' if holder.get('pid') else ''}"
                                f" since {holder.get('acquired_at')} ({round(now - float(holder.get('acquired_ts') or now))} s,"
                                f" lease until {holder.get('expires_at')}); gave up after waiting {waited:g} s (wait={wait:g})",
                                option="wait", holder=self.public(holder, now), waited=waited, contended=True)
                    else:
                        took_over = {**self.public(holder, now), "reason": reason}
                if holder is None or took_over is not None or holder.get("owner") == owner:
                    return self._take(owner, ttl, pid, note, since, now, started, holder, took_over, first_holder, check_mode)
            self.sleep(min(delay, max(0.0, deadline - self.clock())))
            delay = min(delay * 1.5, 1.0)

    def _take(self, owner: str, ttl: float, pid: int | None, note: str, since: float | None, now: float, started: float,
              holder: dict[str, Any] | None, took_over: dict[str, Any] | None, first_holder: dict[str, Any] | None,
              check_mode: bool) -> dict[str, Any]:
        renewing = holder is not None and took_over is None  # the same owner again: the lease is renewed
        record = {"name": self.name, "owner": owner, "pid": pid, "host": socket.gethostname(), "host_id": self.identity,
                  "acquired_ts": float(holder["acquired_ts"]) if renewing else now,
                  "acquired_at": holder["acquired_at"] if renewing else iso(now),
                  "expires_ts": now + ttl, "expires_at": iso(now + ttl), "note": note or None}
        waited = round(now - started, 2)
        if check_mode:
            verb = "renew" if renewing else "take over" if took_over else "take"
            return self._result(changed=not renewing, acquired=False, holder=self.public(holder, now), waited=0.0, took_over=took_over,
                                previous=self._previous(), others=self.others_since(owner, since), contended=took_over is not None,
                                msg=f"would {verb} {self.name}" + (f" from {took_over['owner']} ({took_over['reason']})" if took_over else ""))
        if took_over is not None:
            self._append_history({**holder, "released_ts": now, "released_at": iso(now), "released_by": f"taken over by {owner}: "
                                  + took_over["reason"]})
        atomic_write(self.lock_file, json.dumps(record, indent=1, sort_keys=True) + "\n", 0o600)
        contended = first_holder is not None or took_over is not None
        msg = (f"renewed {self.name} until {record['expires_at']}" if renewing else
               f"took {self.name}" + (f" after waiting {waited:g} s for {first_holder.get('owner')}" if first_holder else "")
               + (f", taken over from {took_over['owner']} ({took_over['reason']})" if took_over else ""))
        return self._result(changed=not renewing, acquired=True, holder=self.public(record, now), waited=waited, took_over=took_over,
                            previous=self._previous(), others=self.others_since(owner, since), contended=contended, msg=msg,
                            waited_for=self.public(first_holder) if first_holder else None)

    def release(self, owner: str, force: bool = False, note: str = "", check_mode: bool = False) -> dict[str, Any]:
        now = self.clock()
        if not self._check_directory(create=False):
            return self._result(changed=False, acquired=False, holder=None, waited=0.0, took_over=None, previous=None, others=[],
                                contended=False, msg=f"{self.name} is not held (no lock directory {self.directory})")
        with self._guard():
            holder = self.holder()
            if holder is None:
                return self._result(changed=False, acquired=False, holder=None, waited=0.0, took_over=None, previous=self._previous(),
                                    others=[], contended=False, msg=f"{self.name} is not held")
            if holder.get("owner") != owner and not force:
                raise LockError(
                    f"owner: lock {self.name} in {self.directory} is held by {holder.get('owner')} since {holder.get('acquired_at')},"
                    f" not by {owner}; only its owner releases it (force=true breaks it)", option="owner", holder=self.public(holder, now))
            released = {**holder, "released_ts": now, "released_at": iso(now),
                        "released_by": owner if holder.get("owner") == owner else f"forced by {owner}"}
            if note:
                released["note"] = note
            if check_mode:
                return self._result(changed=True, acquired=False, holder=self.public(holder, now), waited=0.0, took_over=None,
                                    previous=self._previous(), others=[], contended=False, msg=f"would release {self.name}")
            self._append_history(released)
            os.unlink(self.lock_file)
        return self._result(changed=True, acquired=False, holder=None, waited=0.0, took_over=None, previous=self.public(released),
                            others=[], contended=False,
                            msg=f"released {self.name}" + ("" if holder.get("owner") == owner else f" (held by {holder.get('owner')}, forced)"))

    def _previous(self) -> dict[str, Any] | None:
        past = self.history()
        return self.public(past[-1]) if past else None

    def _result(self, **values: Any) -> dict[str, Any]:
        values.setdefault("waited_for", None)
        return {"name": self.name, "lock_file": str(self.lock_file), **values}
