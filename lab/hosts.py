"""Real systemd hosts for the lab: systemd-nspawn containers booted from one cached Debian rootfs.

Every host is a full Debian 12 with systemd as PID 1 and its own sshd on a
loopback port, so Ansible reaches it over SSH and the lab's services run as
real systemd units. Hosts share the machine's network (no private network):
each host's sshd and each service instance get their own port.

    build                      debootstrap the base rootfs once, cache it as
                               $LAB_ROOTFS_CACHE/lab-rootfs-<recipe hash>.tar.zst
    boot(name, ssh_port, ...)  overlayfs clone (lower = unpacked base, upper/work
                               in $LAB_STATE_DIR/hosts/<name>/), own cgroups,
                               systemd-nspawn --boot in a restart-on-reboot loop;
                               returns once SSH answers and systemd is up
    stop(name)                 SIGTERM to the recorded nspawn PID, unmount, clean cgroups

The CLI wraps the same calls: ``python lab/hosts.py --help``. Stdlib only; run as root.
See docs/lab-hosts.md for timings and gotchas.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
SUPPORT_DIR = Path(__file__).resolve().parent / "hosts"
BASE_FILES_DIR = SUPPORT_DIR / "base"
POLICY_RC_D = SUPPORT_DIR / "policy-rc.d"
NSPAWN_LOOP = SUPPORT_DIR / "nspawn-loop.sh"

DEFAULT_CACHE_DIR = Path("/var/cache/sre-runbooks")
DEFAULT_STATE_DIR = REPO_ROOT / ".lab"
# Overlay mount points live outside the state dir: hosts bind the repo (which
# holds the default state dir), and a recursive bind must not capture other
# hosts' root mounts.
MOUNT_ROOT = Path("/run/sre-runbooks-lab")

# --- the base rootfs recipe: changing any of it (or the files under lab/hosts/base,
# or the provisioning functions below) changes the recipe hash and rebuilds the base.
SUITE = "bookworm"
DEBOOTSTRAP_INCLUDE = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt",
    "iproute2", "procps", "sudo", "ca-certificates", "curl", "less",
)
# Daemons the lab's host roles use; installed with policy-rc.d = 101 and left
# disabled: a role enables them per host.
BAKED_PACKAGES = (
    "postgresql-15", "redis-server", "nginx",
    # The collection's modules on the managed hosts' /usr/bin/python3.
    "python3-psycopg", "python3-requests", "python3-jinja2",
)
DISABLED_UNITS = ("postgresql.service", "redis-server.service", "nginx.service")
# Timers that would reach for the network or churn the disk in throwaway hosts.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer")

HOST_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$")
UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9@._-]+\.(service|socket|timer|target|path|mount)$")
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


class HostError(RuntimeError):
    """A lab host could not be built, booted, reached or stopped."""


# --------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    return Path(os.environ.get("LAB_ROOTFS_CACHE") or DEFAULT_CACHE_DIR)


def state_dir() -> Path:
    return Path(os.environ.get("LAB_STATE_DIR") or DEFAULT_STATE_DIR).resolve()


def lab_id() -> str:
    """Short id of this lab (its state dir): keeps two labs' cgroups and machine names apart."""
    return hashlib.sha256(str(state_dir()).encode()).hexdigest()[:8]


def host_dir(name: str) -> Path:
    return state_dir() / "hosts" / name


def ssh_key_path() -> Path:
    return state_dir() / "ssh" / "id_ed25519"


def known_hosts_path() -> Path:
    return state_dir() / "ssh" / "known_hosts"


def ssh_config_path() -> Path:
    return state_dir() / "ssh" / "config"


def _mountpoint(name: str) -> Path:
    return MOUNT_ROOT / lab_id() / name


def _machine_name(name: str) -> str:
    return f"lab{lab_id()}-{name}"


def _cgroup_dirs(name: str) -> list[Path]:
    """The host's own cgroup in every hierarchy nspawn uses (hybrid: name=systemd + unified)."""
    rel = Path(f"sre-lab-{lab_id()}") / name
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # pure cgroup v2
        return [root / rel]
    return [root / hierarchy / rel for hierarchy in ("systemd", "unified") if (root / hierarchy).is_dir()]


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("text", True)
    try:
        return subprocess.run(list(argv), **kwargs)  # pylint: disable=subprocess-run-check
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip()[-2000:]
        raise HostError(f"{shlex.join(argv)} failed with exit code {exc.returncode}: {detail}") from exc
    except FileNotFoundError as exc:
        raise HostError(f"{argv[0]} is not installed (apt-get install -y systemd-container debootstrap zstd)") from exc


def _log(message: str) -> None:
    print(f"lab-hosts: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- base rootfs


def _provision_script() -> str:
    """Runs inside the (not booted) base rootfs: bake the heavy packages in, leave them disabled."""
    packages = " ".join(BAKED_PACKAGES)
    return "\n".join([
        "set -eu",
        "export DEBIAN_FRONTEND=noninteractive",
        "apt-get update -q",
        "apt-get -y -q -o Dpkg::Options::=--force-confold dist-upgrade",
        f"apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold {packages}",
        f"systemctl disable {' '.join(DISABLED_UNITS)}",
        f"systemctl mask {' '.join(MASKED_UNITS)}",
        "apt-get clean",
        "rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt/* /var/log/dpkg.log",
    ])


def _finalize_rootfs(root: Path) -> None:
    """Strip the per-machine identity so every clone gets its own (see docs/lab-hosts.md)."""
    (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
    # debootstrap copies the build machine's hostname; hosts get theirs at boot.
    (root / "etc/hostname").unlink(missing_ok=True)
    # An empty machine-id: clones would otherwise share one.
    (root / "etc/machine-id").write_text("", encoding="utf-8")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


def _base_files() -> list[tuple[str, bytes]]:
    files = [(str(path.relative_to(BASE_FILES_DIR)), path.read_bytes())
             for path in sorted(BASE_FILES_DIR.rglob("*")) if path.is_file()]
    files.append(("usr/sbin/policy-rc.d", POLICY_RC_D.read_bytes()))
    return files


def recipe_hash() -> str:
    """Hash of everything that shapes the base rootfs; a changed recipe means a new base."""
    digest = hashlib.sha256()
    recipe = {
        "suite": SUITE,
        "include": DEBOOTSTRAP_INCLUDE,
        "packages": BAKED_PACKAGES,
        "disabled": DISABLED_UNITS,
        "masked": MASKED_UNITS,
        "provision": inspect.getsource(_provision_script),
        "finalize": inspect.getsource(_finalize_rootfs),
    }
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    for rel, content in _base_files():
        digest.update(rel.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:16]


def _debian_mirror() -> str:
    """The Debian mirror the machine's apt uses (LAB_DEBIAN_MIRROR overrides)."""
    if os.environ.get("LAB_DEBIAN_MIRROR"):
        return os.environ["LAB_DEBIAN_MIRROR"]
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for stanza in sources.read_text(encoding="utf-8").split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#"))
            if SUITE in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0]
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        for line in sources_list.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return next(p for p in parts[1:] if not p.startswith("["))
    return "http://deb.debian.org/debian"


@dataclasses.dataclass
class BaseImage:
    recipe_hash: str
    tarball: Path
    lower: Path
    built: bool = False
    seconds: float = 0.0


def base_image() -> BaseImage:
    digest = recipe_hash()
    return BaseImage(digest, cache_dir() / f"lab-rootfs-{digest}.tar.zst", cache_dir() / f"lab-rootfs-{digest}")


def build_base(force: bool = False) -> BaseImage:
    """The base rootfs, unpacked and ready as an overlay lower dir; built (1-2 min) only when missing."""
    image = base_image()
    started = time.monotonic()
    with _flock(cache_dir() / ".lab-rootfs.lock"):
        if force:
            shutil.rmtree(image.lower, ignore_errors=True)
            image.tarball.unlink(missing_ok=True)
        if image.lower.is_dir():
            return image
        if image.tarball.exists():
            _unpack(image)
        else:
            _build(image)
            image.built = True
    image.seconds = time.monotonic() - started
    return image


def _unpack(image: BaseImage) -> None:
    tmp = image.lower.with_name(image.lower.name + ".unpack")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(["tar", "--use-compress-program=zstd -d -q", "--numeric-owner", "--xattrs", "--xattrs-include=*",
          "-C", str(tmp), "-xpf", str(image.tarball)], capture_output=True)
    tmp.rename(image.lower)


def _build(image: BaseImage) -> None:
    for tool in ("debootstrap", "systemd-nspawn", "zstd"):
        if not shutil.which(tool):
            raise HostError(f"{tool} is not installed: apt-get install -y systemd-container debootstrap zstd")
    build = image.lower.with_name(image.lower.name + ".build")
    log_path = image.lower.with_name(image.lower.name + ".build.log")
    shutil.rmtree(build, ignore_errors=True)
    mirror = _debian_mirror()
    timings = {}
    with open(log_path, "w", encoding="utf-8") as log:
        def step(label: str, argv: list[str]) -> None:
            _log(f"base rootfs {image.recipe_hash}: {label} (log: {log_path})")
            started = time.monotonic()
            log.write(f"\n### {label}: {shlex.join(argv)}\n")
            log.flush()
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
            timings[label] = round(time.monotonic() - started, 1)
            if result.returncode != 0:
                raise HostError(f"base rootfs {label} failed (exit {result.returncode}); see {log_path}")

        step("debootstrap", ["debootstrap", "--variant=minbase", f"--include={','.join(DEBOOTSTRAP_INCLUDE)}",
                             SUITE, str(build), mirror])
        # The machine's apt sources (with updates and security) so the base matches its libraries.
        apt_dir = build / "etc/apt"
        if Path("/etc/apt/sources.list.d/debian.sources").exists():
            shutil.copy2("/etc/apt/sources.list.d/debian.sources", apt_dir / "sources.list.d/debian.sources")
            (apt_dir / "sources.list").unlink(missing_ok=True)
        for rel, content in _base_files():
            target = build / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        (build / "usr/sbin/policy-rc.d").chmod(0o755)
        step("install packages", ["systemd-nspawn", "--quiet", "--keep-unit", "--register=no", "--settings=no",
                                  "--pipe", f"--directory={build}", "/bin/sh", "-c", _provision_script()])
        _finalize_rootfs(build)
        tmp_tarball = image.tarball.with_name(image.tarball.name + ".tmp")
        step("compress", ["tar", "--use-compress-program=zstd -T0 -q", "--numeric-owner", "--xattrs",
                          "--xattrs-include=*", "-C", str(build), "-cpf", str(tmp_tarball), "."])
        tmp_tarball.rename(image.tarball)
        build.rename(image.lower)
        log.write(f"\n### timings: {json.dumps(timings)}\n")
    meta = {"recipe_hash": image.recipe_hash, "mirror": mirror, "timings_seconds": timings,
            "tarball_bytes": image.tarball.stat().st_size, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    image.tarball.with_name(f"lab-rootfs-{image.recipe_hash}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    _log(f"base rootfs {image.recipe_hash} built: {timings}")


# --------------------------------------------------------------------------- SSH


def ensure_ssh_key() -> Path:
    """The lab's SSH key, generated once per state dir."""
    key = ssh_key_path()
    with _flock(state_dir() / ".ssh.lock"):
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sre-runbooks-lab", "-f", str(key)],
                 capture_output=True)
    return key


def ssh_options() -> list[str]:
    """ssh options for every lab host: the lab key, the lab's own known_hosts, no agent or user config."""
    return [
        "-F", "none",
        "-i", str(ssh_key_path()),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={known_hosts_path()}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "ConnectTimeout=5",
        "-o", "LogLevel=ERROR",
    ]


def ssh_command(name: str, command: str | Sequence[str] | None = None, tty: bool = False) -> list[str]:
    record = _load_record(name)
    argv = ["ssh", *ssh_options(), "-p", str(record["ssh_port"])]
    if tty:
        argv.append("-t")
    argv.append("root@127.0.0.1")
    if command is not None:
        argv.append(command if isinstance(command, str) else shlex.join(command))
    return argv


def run(name: str, command: str | Sequence[str], input: str | None = None,  # pylint: disable=redefined-builtin
        check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run a command in host ``name`` over SSH (a string goes to the remote shell as is)."""
    argv = ssh_command(name, command)
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        shown = command if isinstance(command, str) else shlex.join(command)
        raise HostError(f"{name}: `{shown}` exited with {result.returncode}: {(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def ansible_host_vars(name: str) -> dict:
    """Inventory variables that let Ansible reach host ``name`` over SSH (pipelining on)."""
    record = _load_record(name)
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": record["ssh_port"],
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(ssh_key_path()),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts_path()} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        "ansible_ssh_pipelining": True,
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def _refresh_ssh_files() -> None:
    """Rewrite the lab's known_hosts and ssh config from the records of running/booting hosts."""
    with _flock(state_dir() / ".ssh.lock"):
        known, config = [], []
        for record in _all_records():
            if not record.get("host_key") or record.get("state") == "stopped":
                continue
            known.append(f"[127.0.0.1]:{record['ssh_port']} {record['host_key']}")
            config.append(f"Host {record['name']}\n  HostName 127.0.0.1\n  Port {record['ssh_port']}\n  User root\n"
                          f"  IdentityFile {ssh_key_path()}\n  IdentitiesOnly yes\n"
                          f"  UserKnownHostsFile {known_hosts_path()}\n  StrictHostKeyChecking yes\n")
        _write_atomic(known_hosts_path(), "".join(line + "\n" for line in known))
        _write_atomic(ssh_config_path(), "\n".join(config))


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, mode)
    os.replace(tmp.name, path)


# --------------------------------------------------------------------------- host records


def _record_path(name: str) -> Path:
    return host_dir(name) / "host.json"


def _load_record(name: str) -> dict:
    path = _record_path(name)
    if not path.exists():
        raise HostError(f"no lab host named {name!r} in {state_dir()}")
    return json.loads(path.read_text(encoding="utf-8"))


def _save_record(record: dict) -> None:
    _write_atomic(_record_path(record["name"]), json.dumps(record, indent=2, sort_keys=True) + "\n")


def _all_records() -> list[dict]:
    hosts = state_dir() / "hosts"
    if not hosts.is_dir():
        return []
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(hosts.glob("*/host.json"))]


# Supervisors this process started: reaped here so a finished one is not mistaken for alive.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _pid_alive(pid: int | None, must_contain: str) -> bool:
    """True when ``pid`` runs and its command line contains ``must_contain`` (guards against PID reuse)."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return must_contain in cmdline


def _supervisor_alive(record: dict) -> bool:
    return _pid_alive(record.get("supervisor_pid"), str(host_dir(record["name"])))


def _nspawn_pid(name: str) -> int | None:
    try:
        pid = int((host_dir(name) / "nspawn.pid").read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid, f"--machine={_machine_name(name)}") else None


def _is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return any(line.split()[1] == target for line in mounts)


# --------------------------------------------------------------------------- boot


@dataclasses.dataclass(frozen=True)
class Bind:
    source: Path
    target: Path
    read_only: bool = True

    @classmethod
    def parse(cls, spec: str | Sequence) -> Bind:
        """``SRC:DST[:ro|rw]`` or a ``(src, dst[, read_only])`` tuple."""
        if isinstance(spec, str):
            parts = spec.split(":")
            if len(parts) == 1:
                parts.append(parts[0])
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise HostError(f"bind {spec!r} is not SRC:DST[:ro|rw]")
            return cls(Path(parts[0]), Path(parts[1]), len(parts) == 3 and parts[2] == "ro")
        items = list(spec)
        if len(items) not in (2, 3):
            raise HostError(f"bind {spec!r} is not (source, target[, read_only])")
        return cls(Path(items[0]), Path(items[1]), bool(items[2]) if len(items) == 3 else True)

    def validate(self) -> None:
        for path in (self.source, self.target):
            if not path.is_absolute() or ":" in str(path) or "," in str(path):
                raise HostError(f"bind path {str(path)!r} must be absolute and contain no ':' or ','")
        if not self.source.exists():
            raise HostError(f"bind source {self.source} does not exist")

    def nspawn_arg(self) -> str:
        return f"--bind{'-ro' if self.read_only else ''}={self.source}:{self.target}"


def python_binds() -> list[Bind]:
    """Binds that make the repo's venv python (/work/main/.venv/bin/python) run inside a host:
    the repo and the interpreter it was made from (pyenv), both read-only."""
    binds = [Bind(REPO_ROOT, REPO_ROOT, True)]
    venv = (REPO_ROOT / ".venv").resolve()
    if venv.is_dir() and not str(venv).startswith(str(REPO_ROOT) + "/"):
        # .venv is a link to a venv elsewhere (a shared one): bind that too, at its own path.
        binds.append(Bind(venv, venv, True))
    interpreter_home = Path("/root/.pyenv")
    cfg = venv / "pyvenv.cfg"
    if cfg.exists():
        for line in cfg.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "home":
                # home = <prefix>/bin; bind the whole prefix (stdlib, headers, shared libs).
                interpreter_home = Path(value.strip()).parent
    if interpreter_home.exists() and not str(interpreter_home).startswith(str(REPO_ROOT) + "/"):
        binds.append(Bind(interpreter_home, interpreter_home, True))
    return binds


@dataclasses.dataclass
class HostInfo:
    name: str
    state: str
    ssh_port: int
    supervisor_pid: int | None = None
    nspawn_pid: int | None = None
    boot_seconds: float | None = None
    system_state: str | None = None
    binds: list = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_port_free(port: int) -> None:
    for record in _all_records():
        if record["ssh_port"] == port and _supervisor_alive(record):
            raise HostError(f"ssh_port {port} is already in use by lab host {record['name']!r}")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise HostError(f"ssh_port {port} on 127.0.0.1 is already in use ({exc.strerror})") from exc


def _write_identity(root: Path, name: str, ssh_port: int) -> str:
    """Per-host identity in the overlay's upper dir; returns the host's public SSH host key."""
    (root / "etc/hostname").write_text(f"{name}\n", encoding="utf-8")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                                    encoding="utf-8")
    machine_id = root / "etc/machine-id"
    if not machine_id.read_text(encoding="utf-8").strip():  # kept across a stop/boot of the same host
        machine_id.write_text(uuid.uuid4().hex + "\n", encoding="utf-8")
    (root / "etc/ssh/sshd_config.d/20-lab-port.conf").write_text(
        f"# Written by lab/hosts.py: hosts share the machine's network, each sshd has its own port.\n"
        f"Port {ssh_port}\nListenAddress 127.0.0.1\n", encoding="utf-8")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(Path(str(ssh_key_path()) + ".pub").read_text(encoding="utf-8"), encoding="utf-8")
    authorized.chmod(0o600)
    host_key = root / "etc/ssh/ssh_host_ed25519_key"
    if not host_key.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(host_key)], capture_output=True)
    return " ".join(Path(str(host_key) + ".pub").read_text(encoding="utf-8").split()[:2])


def _nspawn_args(name: str, root: Path, binds: Sequence[Bind]) -> list[str]:
    return [
        "--quiet", "--boot", "--keep-unit", "--register=no", "--settings=no",
        f"--directory={root}", f"--machine={_machine_name(name)}", f"--hostname={name}",
        "--console=read-only", "--link-journal=no",
        *(bind.nspawn_arg() for bind in binds),
    ]


def boot(name: str, ssh_port: int, binds: Iterable = (), fresh: bool = False,
         timeout: float = BOOT_TIMEOUT, wait: bool = True) -> HostInfo:
    """Boot lab host ``name`` with sshd on 127.0.0.1:``ssh_port``; returns once SSH answers and
    ``systemctl is-system-running`` says running or degraded.

    ``binds``: ``(src, dst, read_only)`` tuples, ``Bind`` objects or ``SRC:DST[:ro]`` strings.
    The host's disk (overlay upper dir) survives stop/boot unless ``fresh`` is true.
    """
    if not HOST_NAME_RE.match(name or ""):
        raise HostError(f"host name {name!r} must be 1-48 characters of a-z, 0-9 and '-' (a valid hostname)")
    if not isinstance(ssh_port, int) or not 1024 <= ssh_port <= 65535:
        raise HostError(f"ssh_port {ssh_port!r} must be an integer between 1024 and 65535")
    bind_list = [b if isinstance(b, Bind) else Bind.parse(b) for b in binds]
    for bind in bind_list:
        bind.validate()
    if os.geteuid() != 0:
        raise HostError("lab hosts need root (overlay mounts, cgroups, systemd-nspawn)")
    image = build_base()
    ensure_ssh_key()
    started = time.monotonic()
    directory = host_dir(name)
    with _flock(directory.parent / f".{name}.lock"):
        if _record_path(name).exists():
            old = _load_record(name)
            if _supervisor_alive(old):
                raise HostError(f"lab host {name!r} is already running (supervisor PID {old['supervisor_pid']})")
            _cleanup(name)
            if old.get("base_hash") != image.recipe_hash:
                fresh = True  # an upper dir only makes sense over the lower it was made on
        _check_port_free(ssh_port)
        if fresh:
            for sub in ("upper", "work"):
                shutil.rmtree(directory / sub, ignore_errors=True)
        for sub in ("upper", "work"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        for stale in ("stop-requested", "nspawn.pid"):
            (directory / stale).unlink(missing_ok=True)
        root = _mountpoint(name)
        root.mkdir(parents=True, exist_ok=True)
        _run(["mount", "-t", "overlay", f"lab-{name}", "-o",
              f"lowerdir={image.lower},upperdir={directory / 'upper'},workdir={directory / 'work'}", str(root)],
             capture_output=True)
        try:
            host_key = _write_identity(root, name, ssh_port)
            cgroups = _cgroup_dirs(name)
            for cgroup in cgroups:
                cgroup.mkdir(parents=True, exist_ok=True)
            console = open(directory / "console.log", "ab")  # pylint: disable=consider-using-with
            try:
                proc = subprocess.Popen(  # pylint: disable=consider-using-with
                    ["/bin/sh", str(NSPAWN_LOOP), str(directory), *map(str, cgroups), "--",
                     *_nspawn_args(name, root, bind_list)],
                    stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                console.close()
            _CHILDREN[proc.pid] = proc
        except Exception:
            _cleanup(name)
            raise
        record = {
            "name": name, "ssh_port": ssh_port, "machine": _machine_name(name), "supervisor_pid": proc.pid,
            "base_hash": image.recipe_hash, "lower": str(image.lower), "mountpoint": str(root),
            "cgroups": [str(c) for c in cgroups], "binds": [[str(b.source), str(b.target), b.read_only] for b in bind_list],
            "host_key": host_key, "state": "booting", "started_at": time.time(),
        }
        _save_record(record)
    _refresh_ssh_files()
    info = HostInfo(name, "booting", ssh_port, proc.pid, binds=record["binds"])
    if not wait:
        return info
    try:
        info.system_state = wait_ready(name, timeout=timeout)
    except HostError:
        stop(name)
        raise
    info.state = "running"
    info.nspawn_pid = _nspawn_pid(name)
    info.boot_seconds = round(time.monotonic() - started, 2)
    record.update(state="running", boot_seconds=info.boot_seconds)
    _save_record(record)
    return info


def wait_ready(name: str, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait until host ``name`` answers SSH and systemd finished booting; returns the system state."""
    record = _load_record(name)
    deadline = time.monotonic() + timeout
    last = "sshd not listening yet"
    while time.monotonic() < deadline:
        if not _supervisor_alive(record):
            raise HostError(f"lab host {name!r} exited while booting:\n{console_tail(name)}")
        try:
            with socket.create_connection(("127.0.0.1", record["ssh_port"]), timeout=1):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        remaining = max(1.0, deadline - time.monotonic())
        try:
            result = subprocess.run(ssh_command(name, "systemctl is-system-running --wait"), capture_output=True,
                                    text=True, timeout=remaining, check=False)
        except subprocess.TimeoutExpired:
            break
        state = result.stdout.strip()
        if state in ("running", "degraded"):
            return state
        last = f"ssh exit {result.returncode}: {(result.stdout + result.stderr).strip()}"
        time.sleep(0.2)
    raise HostError(f"lab host {name!r} not ready after {timeout:.0f}s ({last}):\n{console_tail(name)}")


def boot_many(specs: Iterable[dict], max_workers: int = 16, timeout: float = BOOT_TIMEOUT) -> list[HostInfo]:
    """Boot several hosts in parallel; ``specs`` are ``boot()`` keyword dicts. All or nothing."""
    specs = list(specs)
    _warn_inotify_limit(len(specs))
    build_base()  # once, before the threads
    ensure_ssh_key()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = [pool.submit(boot, timeout=timeout, **spec) for spec in specs]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        for spec, future in zip(specs, futures):
            if future.exception() is None:
                stop(spec["name"])
        raise HostError("; ".join(str(e) for e in errors))
    return [f.result() for f in futures]


def _warn_inotify_limit(new_hosts: int) -> None:
    """Each host takes about 7 inotify instances (systemd, journald, logind, dbus...); at the default
    fs.inotify.max_user_instances=128 hosts stop booting at about 19 ("Too many open files")."""
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    running = sum(1 for record in _all_records() if _supervisor_alive(record))
    if (running + new_hosts) * 7 > limit:
        _log(f"{running + new_hosts} hosts may exceed fs.inotify.max_user_instances={limit}; "
             "raise it: sysctl -w fs.inotify.max_user_instances=1024")


def console_tail(name: str, lines: int = 30) -> str:
    try:
        return "\n".join((host_dir(name) / "console.log").read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"


# --------------------------------------------------------------------------- stop


def _wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _cgroup_pids(cgroups: Iterable[Path]) -> set[int]:
    pids = set()
    for cgroup in cgroups:
        if cgroup.is_dir():
            for procs in cgroup.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(p) for p in procs.read_text(encoding="utf-8").split())
    return pids


def _remove_cgroup_tree(cgroup: Path) -> None:
    if not cgroup.is_dir():
        return
    for sub in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        cgroup.rmdir()
    with contextlib.suppress(OSError):
        cgroup.parent.rmdir()  # the lab's cgroup, once its last host is gone


def _cleanup(name: str) -> None:
    """Unmount the host's overlay and remove its cgroups (after nspawn exited)."""
    cgroups = _cgroup_dirs(name)
    leftovers = _cgroup_pids(cgroups)
    for pid in leftovers:  # only processes inside this host's own cgroups
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leftovers:
        _wait_until(lambda: not _cgroup_pids(cgroups), 5)
    root = _mountpoint(name)
    if _is_mounted(root):
        for _attempt in range(50):
            if subprocess.run(["umount", str(root)], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            _run(["umount", "--lazy", str(root)], capture_output=True)
    for directory in (root, root.parent, root.parent.parent):  # the host's, then the lab's, then ours
        with contextlib.suppress(OSError):
            directory.rmdir()
    for cgroup in cgroups:
        for _attempt in range(20):
            _remove_cgroup_tree(cgroup)
            if not cgroup.exists():
                break
            time.sleep(0.05)


def stop(name: str, timeout: float = STOP_TIMEOUT) -> float:
    """Stop host ``name``: SIGTERM to its recorded nspawn PID (a clean poweroff), wait, unmount,
    remove its cgroups. Returns the seconds it took. Stopping a stopped host is a no-op."""
    record = _load_record(name)
    directory = host_dir(name)
    started = time.monotonic()
    with _flock(directory.parent / f".{name}.lock"):
        if _supervisor_alive(record):
            (directory / "stop-requested").touch()
            nspawn = _nspawn_pid(name)
            if nspawn:
                os.kill(nspawn, signal.SIGTERM)
            else:
                os.kill(record["supervisor_pid"], signal.SIGTERM)
            if not _wait_until(lambda: not _supervisor_alive(record), timeout):
                _log(f"{name}: no clean poweroff within {timeout:.0f}s; killing its processes")
                nspawn = _nspawn_pid(name)
                if nspawn:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(nspawn, signal.SIGKILL)
                _wait_until(lambda: not _supervisor_alive(record), 5)
        _cleanup(name)
        record.update(state="stopped", supervisor_pid=None, stopped_at=time.time())
        _save_record(record)
    _refresh_ssh_files()
    return round(time.monotonic() - started, 2)


def stop_all(timeout: float = STOP_TIMEOUT) -> dict[str, float]:
    """Stop every host of this lab (in parallel)."""
    names = [r["name"] for r in _all_records()]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as pool:
        return dict(zip(names, pool.map(lambda n: stop(n, timeout), names)))


def destroy(name: str) -> None:
    """Stop host ``name`` and delete its disk and record."""
    stop(name)
    shutil.rmtree(host_dir(name))
    _refresh_ssh_files()


# --------------------------------------------------------------------------- status


def status(name: str, probe: bool = False) -> HostInfo:
    """State of host ``name``; with ``probe``, ask its systemd over SSH too."""
    record = _load_record(name)
    alive = _supervisor_alive(record)
    state = record.get("state", "stopped") if alive else "stopped"
    if not alive and (_is_mounted(_mountpoint(name)) or any(Path(c).exists() for c in record.get("cgroups", []))):
        state = "crashed"  # nspawn gone but not cleaned up; stop() cleans it
    info = HostInfo(name, state, record["ssh_port"], record.get("supervisor_pid") if alive else None,
                    _nspawn_pid(name) if alive else None, record.get("boot_seconds"), binds=record.get("binds", []))
    if probe and alive:
        result = run(name, "systemctl is-system-running", check=False, timeout=15)
        info.system_state = result.stdout.strip() or f"unreachable ({result.stderr.strip()})"
    return info


def list_hosts(probe: bool = False) -> list[HostInfo]:
    return [status(r["name"], probe=probe) for r in _all_records()]


# --------------------------------------------------------------------------- units


def install_unit(name: str, unit: str, content: str, enable: bool = True, start: bool = True) -> dict:
    """Install systemd unit ``unit`` with ``content`` into host ``name``, daemon-reload, and
    ``enable --now`` it; a changed unit file restarts it. Returns {changed, active}."""
    if not UNIT_NAME_RE.match(unit):
        raise HostError(f"unit name {unit!r} must look like NAME.service (or .socket/.timer/.target/.path/.mount)")
    script = r"""
set -eu
unit=$1 enable=$2 start=$3
path=/etc/systemd/system/$unit
tmp=$(mktemp /etc/systemd/system/.lab-unit.XXXXXX)
cat > "$tmp"
if [ -e "$path" ] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; changed=0
else chmod 0644 "$tmp"; mv "$tmp" "$path"; systemctl daemon-reload; changed=1; fi
if [ "$enable" = 1 ]; then systemctl enable --quiet "$unit"; fi
if [ "$start" = 1 ]; then
  if [ "$changed" = 1 ]; then systemctl restart "$unit"; else systemctl start "$unit"; fi
fi
echo "changed=$changed"
echo "active=$(systemctl is-active "$unit" || true)"
"""
    command = shlex.join(["sh", "-c", script, "sh", unit, str(int(enable)), str(int(start))])
    result = run(name, command, input=content)
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {"changed": values.get("changed") == "1", "active": values.get("active", "unknown")}


def remove_unit(name: str, unit: str) -> None:
    """Stop, disable and delete unit ``unit`` in host ``name``."""
    if not UNIT_NAME_RE.match(unit):
        raise HostError(f"unit name {unit!r} must look like NAME.service")
    run(name, shlex.join(["sh", "-c", 'systemctl disable --now "$1" 2>/dev/null || true; rm -f "/etc/systemd/system/$1"; '
                          "systemctl daemon-reload", "sh", unit]))


def write_file(name: str, path: str, content: str, mode: int = 0o644) -> None:
    """Write a file into host ``name`` over SSH (e.g. a unit's environment file)."""
    if not path.startswith("/"):
        raise HostError(f"path {path!r} must be absolute")
    run(name, shlex.join(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"', "sh", path, f"{mode:o}"]),
        input=content)


# --------------------------------------------------------------------------- CLI


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab/hosts.py", description="Real systemd hosts for the lab (systemd-nspawn).")
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build (or unpack) the cached base rootfs")
    build_cmd.add_argument("--force", action="store_true", help="rebuild even if cached")
    boot_cmd = sub.add_parser("boot", help="boot a host and wait until SSH answers")
    boot_cmd.add_argument("name")
    boot_cmd.add_argument("--ssh-port", type=int, required=True)
    boot_cmd.add_argument("--bind", action="append", default=[], metavar="SRC:DST[:ro]")
    boot_cmd.add_argument("--python", action="store_true", help="bind the repo and its venv's interpreter read-only")
    boot_cmd.add_argument("--fresh", action="store_true", help="discard the host's disk from earlier boots")
    boot_cmd.add_argument("--timeout", type=float, default=BOOT_TIMEOUT)
    stop_cmd = sub.add_parser("stop", help="stop a host")
    stop_cmd.add_argument("name")
    sub.add_parser("stop-all", help="stop every host of this lab")
    destroy_cmd = sub.add_parser("destroy", help="stop a host and delete its disk")
    destroy_cmd.add_argument("name")
    list_cmd = sub.add_parser("list", help="hosts and their state")
    list_cmd.add_argument("--json", action="store_true")
    list_cmd.add_argument("--probe", action="store_true", help="ask each running host's systemd over SSH")
    ssh_cmd = sub.add_parser("ssh", help="ssh into a host: ssh NAME [-- CMD...]")
    ssh_cmd.add_argument("name")
    ssh_cmd.add_argument("remote", nargs=argparse.REMAINDER)
    unit_cmd = sub.add_parser("install-unit", help="install a unit file into a host and enable --now it")
    unit_cmd.add_argument("name")
    unit_cmd.add_argument("unit_file", type=Path)
    unit_cmd.add_argument("--no-start", action="store_true")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            image = build_base(force=args.force)
            print(json.dumps({"recipe_hash": image.recipe_hash, "tarball": str(image.tarball), "lower": str(image.lower),
                              "built": image.built, "seconds": round(image.seconds, 1)}))
        elif args.command == "boot":
            binds = [Bind.parse(b) for b in args.bind] + (python_binds() if args.python else [])
            info = boot(args.name, args.ssh_port, binds, fresh=args.fresh, timeout=args.timeout)
            print(json.dumps(info.as_dict()))
        elif args.command == "stop":
            print(json.dumps({"name": args.name, "stop_seconds": stop(args.name)}))
        elif args.command == "stop-all":
            print(json.dumps(stop_all()))
        elif args.command == "destroy":
            destroy(args.name)
        elif args.command == "list":
            hosts = list_hosts(probe=args.probe)
            if args.json:
                print(json.dumps([h.as_dict() for h in hosts], indent=2))
            else:
                print(f"{'NAME':20} {'STATE':9} {'SSH':6} {'PID':8} SYSTEM")
                for h in hosts:
                    print(f"{h.name:20} {h.state:9} {h.ssh_port:<6} {h.nspawn_pid or '-':<8} {h.system_state or '-'}")
        elif args.command == "ssh":
            remote = args.remote[1:] if args.remote[:1] == ["--"] else args.remote
            # Like ssh itself: the words are joined and run by the remote shell.
            argv_ssh = ssh_command(args.name, " ".join(remote) if remote else None, tty=not remote and sys.stdin.isatty())
            os.execvp(argv_ssh[0], argv_ssh)
        elif args.command == "install-unit":
            result = install_unit(args.name, args.unit_file.name, args.unit_file.read_text(encoding="utf-8"),
                                  start=not args.no_start)
            print(json.dumps(result))
    except (HostError, OSError) as exc:
        print(f"lab/hosts.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
