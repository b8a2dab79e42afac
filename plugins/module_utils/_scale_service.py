# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scale a systemd template service (``name@N``) up or down, health-gated, with load-balancer membership.

Scale up, one instance at a time: start it, wait until its health URL answers, only then add it to
the load balancer (write the upstream file, test the configuration, reload). An instance that does
not become healthy is stopped again and never reaches the load balancer; the rollout stops there.

Scale down, highest instance first: take it out of the load balancer (write, test, reload), let it
drain, then stop it. ``min_instances`` is never crossed.

The upstream file is only ever replaced atomically, and a configuration test that fails puts the
previous file back before anything is reloaded, so the balancer keeps serving the previous members.

Standby hosts of a group (``mode=host`` and ``mode=members``): one task per host, in a play with
``serial: 1`` and ``max_fail_percentage: 0``, starts the host's unit and waits for its health URL
(``HostUnit``); the next task, delegated to the load balancer host, adds it to the balancer once the
balancer itself sees it healthy (``Members``), and with HAProxy's runtime API checks the running
balancer really has it. A host that does not become healthy fails, so the play stops the rollout.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any, Callable
from urllib.error import HTTPError, URLError

from ansible_collections.sre.runbooks.plugins.module_utils._files import atomic_write as write_file_atomically

Runner = Callable[[list[str]], tuple[int, str, str]]


class ScaleError(Exception):
    def __init__(self, message: str, option: str | None = None, partial: dict[str, Any] | None = None):
        super().__init__(message)
        self.option = option
        self.partial = partial or {}


def unit(template: str, instance: str) -> str:
    return f"{template}@{instance}.service"


def running_instances(run: Runner, template: str) -> list[str]:
    """Instances of ``template@`` that are active (or activating) now."""
    rc, out, err = run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "--type=service", f"{template}@*.service"])
    if rc != 0:
        raise ScaleError(f"template: systemctl list-units failed: {err.strip()}", option="template")
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].startswith(f"{template}@") and fields[2] in ("active", "activating", "reloading"):
            found.append(fields[0][len(template) + 1:-len(".service")])
    return found


def sort_key(instance: str):
    return (0, int(instance), "") if instance.isdigit() else (1, 0, instance)


def server_name(address: str) -> str:
    """A HAProxy server name for an address that stays the same whatever else is in the backend."""
    return "srv_" + re.sub(r"[^A-Za-z0-9]", "_", address)


def parse_entry(entry: str) -> tuple[str, str]:
    """``NAME=ADDRESS`` or ``ADDRESS`` → (server name, address)."""
    name, sep, address = entry.partition("=")
    return (name.strip(), address.strip()) if sep else (server_name(entry.strip()), entry.strip())


def render_upstream(lb_type: str, name: str, servers: list, header: str) -> str:
    """``servers``: addresses, or (server name, address) pairs (HAProxy server names; nginx has none)."""
    pairs = [s if isinstance(s, tuple) else (server_name(s), s) for s in servers]
    lines = [f"# {header}"]
    if lb_type == "nginx":
        lines.append(f"upstream {name} {{")
        lines += [f"    server {address};" for _name, address in pairs] or ["    server 127.0.0.1:9 down;"]
        lines.append("}")
    else:  # haproxy: a backend section
        lines.append(f"backend {name}")
        lines += [f"    server {srv} {address} check" for srv, address in pairs]
    return "\n".join(lines) + "\n"


def parse_entries(lb_type: str, text: str) -> list[tuple[str, str]]:
    """(server name, address) of every member; nginx members are named by their address."""
    members = []
    for line in text.splitlines():
        fields = line.strip().rstrip(";").split()
        if lb_type == "nginx" and len(fields) >= 2 and fields[0] == "server" and "down" not in fields:
            members.append((server_name(fields[1]), fields[1]))
        elif lb_type == "haproxy" and len(fields) >= 3 and fields[0] == "server":
            members.append((fields[1], fields[2]))
    return members


def parse_members(lb_type: str, text: str) -> list[str]:
    return [address for _name, address in parse_entries(lb_type, text)]


def haproxy_runtime_servers(socket_path: str, backend: str, timeout: float = 2.0) -> dict[str, dict[str, str]]:
    """The running HAProxy's view of ``backend`` (Runtime API ``show servers state``): address → its state fields."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(f"show servers state {backend}\n".encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    lines = b"".join(chunks).decode("utf-8", "replace").splitlines()
    header = next((line.lstrip("# ").split() for line in lines if line.startswith("# be_id")), None)
    if header is None:
        raise ScaleError(f"lb_runtime_socket: HAProxy did not list backend {backend!r}: {' '.join(lines)[:200]}", option="lb_runtime_socket")
    servers = {}
    for line in lines:
        fields = line.split()
        if line.startswith("#") or len(fields) < len(header) - 2:
            continue
        row = dict(zip(header, fields))
        if row.get("be_name") == backend:
            servers[f"{row['srv_addr']}:{row['srv_port']}"] = row
    return servers


def write_atomic(path: Path, text: str) -> None:
    write_file_atomically(path, text, 0o644)


def wait_healthy(url: str, o: dict[str, Any]) -> tuple[bool, str]:
    """Poll ``url`` until it passes ``health_passes`` checks in a row or ``health_timeout`` passes."""
    deadline = time.monotonic() + o["health_timeout"]
    passes, detail = 0, "not checked"
    while True:
        ok, detail = healthy(url, min(5.0, max(o["health_timeout"], 1.0)))
        passes = passes + 1 if ok else 0
        if passes >= o["health_passes"]:
            return True, detail
        if time.monotonic() >= deadline:
            return False, detail
        time.sleep(o["health_interval"])


def healthy(url: str, timeout: float) -> tuple[bool, str]:
    from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel
    try:
        status = open_url(url, timeout=timeout, follow_redirects="none").status
    except HTTPError as exc:
        status = exc.code
    except (URLError, OSError) as exc:
        return False, f"unreachable ({type(exc).__name__})"
    return 200 <= status < 300, f"HTTP {status}"


class LoadBalancer:
    """The balancer's upstream file (owned by the module), its configuration test, reload and, for HAProxy, its Runtime API."""

    def __init__(self, o: dict[str, Any], run: Runner, steps: list[str]):
        self.o, self.run, self.steps = o, run, steps
        self.file = Path(o["lb_upstream_file"]) if o["lb_type"] != "none" else None

    def entries(self) -> list[tuple[str, str]]:
        if not self.file:
            return []
        try:
            return parse_entries(self.o["lb_type"], self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []

    def _reload(self) -> None:
        rc, _out, err = self.run(self.o["lb_reload_command"])
        if rc != 0:
            raise ScaleError(f"lb_reload_command: {' '.join(self.o['lb_reload_command'])} failed: {err.strip()[-300:]}",
                             option="lb_reload_command")

    def _put_back(self, previous: str | None) -> None:
        if previous is None:
            self.file.unlink()
        else:
            write_atomic(self.file, previous)

    def runtime(self) -> dict[str, dict[str, str]] | None:
        """HAProxy's running members (None when there is no Runtime API to ask)."""
        if self.o["lb_type"] != "haproxy" or not self.o.get("lb_runtime_socket"):
            return None
        return haproxy_runtime_servers(self.o["lb_runtime_socket"], self.o["lb_name"])

    def _wait_runtime(self, servers: list) -> tuple[bool, str]:
        want = sorted(s[1] if isinstance(s, tuple) else s for s in servers)
        deadline = time.monotonic() + self.o.get("lb_runtime_timeout", 10)
        seen = "not asked"
        while True:
            try:
                running = self.runtime() or {}
                seen = ", ".join(f"{a} ({'UP' if r.get('srv_op_state') == '2' else 'state ' + r.get('srv_op_state', '?')})"
                                 for a, r in sorted(running.items())) or "(none)"
                if sorted(running) == want and all(r.get("srv_op_state") == "2" for r in running.values()):
                    return True, seen
            except OSError as exc:  # the socket is re-created by the reload
                seen = f"runtime API not answering ({type(exc).__name__})"
            if time.monotonic() >= deadline:
                return False, seen
            time.sleep(0.2)

    def apply(self, servers: list) -> None:
        """Write the upstream file, test the config, reload, check the running balancer; on a failure put the old file back."""
        if not self.file:
            return
        previous = self.file.read_text(encoding="utf-8") if self.file.exists() else None
        write_atomic(self.file, render_upstream(self.o["lb_type"], self.o["lb_name"], servers,
                                                f"managed by sre.runbooks.scale_service ({self.o.get('template') or self.o['mode']})"))
        if self.o["lb_check_command"]:
            rc, _out, err = self.run(self.o["lb_check_command"])
            if rc != 0:
                self._put_back(previous)
                raise ScaleError(f"lb_check_command: the load balancer rejected the new upstream file, previous file restored: "
                                 f"{err.strip()[-300:]}", option="lb_check_command")
        self._reload()
        if self.o["lb_type"] == "haproxy" and self.o.get("lb_runtime_socket"):
            ok, seen = self._wait_runtime(servers)
            if not ok:
                self._put_back(previous)
                self._reload()
                raise ScaleError(f"lb_runtime_socket: the running HAProxy did not take the members within "
                                 f"{self.o.get('lb_runtime_timeout', 10)}s (it has: {seen}); previous file restored and reloaded",
                                 option="lb_runtime_socket")
            self.steps.append(f"HAProxy runtime backend {self.o['lb_name']}: {seen}")
        shown = [s[1] if isinstance(s, tuple) else s for s in servers]
        self.steps.append(f"load balancer members: {', '.join(shown) or '(none)'}")


class Scaler:
    def __init__(self, o: dict[str, Any], run: Runner, check_mode: bool):
        self.o, self.run, self.check = o, run, check_mode
        self.steps: list[str] = []
        self.lb = LoadBalancer(o, run, self.steps)
        self.lb_file = self.lb.file

    def _systemctl(self, *args: str) -> None:
        rc, _out, err = self.run(["systemctl", *args])
        if rc != 0:
            raise ScaleError(f"systemctl {' '.join(args)} failed: {err.strip()[-300:]}", option="template")
        self.steps.append(f"systemctl {' '.join(args)}")

    def members(self) -> list[str]:
        if not self.lb_file:
            return []
        try:
            return parse_members(self.o["lb_type"], self.lb_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []

    def server(self, instance: str) -> str:
        return self.o["lb_server"].format(instance=instance)

    def set_members(self, servers: list[str]) -> None:
        self.lb.apply(servers)

    def wait_healthy(self, instance: str) -> tuple[bool, str]:
        return wait_healthy(self.o["health_url"].format(instance=instance), self.o)

    def scale(self) -> dict[str, Any]:
        o = self.o
        desired = [str(i) for i in o["instances"]]
        running = running_instances(self.run, o["template"])
        members_before = self.members()
        add = [i for i in desired if i not in running]
        remove = sorted((i for i in running if i not in desired), key=sort_key, reverse=True)
        # Running and desired but missing from the balancer (or listed but not desired): fix membership too.
        wanted_members = [self.server(i) for i in sorted(set(desired) & set(running), key=sort_key)]
        result: dict[str, Any] = {
            "instances_before": sorted(running, key=sort_key), "members_before": members_before,
            "started": [], "stopped": [], "failed_instance": None,
        }
        membership_fix = self.lb_file is not None and sorted(members_before) != sorted(wanted_members) and not add and not remove
        changed = bool(add or remove or membership_fix)
        result["diff"] = {
            "before": f"instances: {', '.join(sorted(running, key=sort_key)) or '(none)'}\nmembers: {', '.join(members_before) or '(none)'}\n",
            "after": f"instances: {', '.join(sorted(desired, key=sort_key)) or '(none)'}\n"
                     f"members: {', '.join(self.server(i) for i in sorted(desired, key=sort_key)) if self.lb_file else '(none)'}\n",
        }
        result["to_start"], result["to_stop"] = add, remove
        if self.check or not changed:
            result.update({"changed": changed, "instances": sorted(desired if self.check else running, key=sort_key),
                           "members": members_before, "steps": []})
            return result
        current = sorted(set(running) & set(desired), key=sort_key)
        members = [self.server(i) for i in current]
        if membership_fix:
            self.set_members(members)
        # Scale down first: out of the balancer, drain, stop.
        for instance in remove:
            kept = [m for m in self.members() if m != self.server(instance)]
            self.set_members(kept)
            if o["drain"] > 0:
                time.sleep(o["drain"])
            self._systemctl("disable" if o["enable"] else "stop", *(["--now"] if o["enable"] else []), unit(o["template"], instance))
            result["stopped"].append(instance)
        # Scale up: start, health gate, then into the balancer.
        for instance in add:
            self._systemctl("enable" if o["enable"] else "start", *(["--now"] if o["enable"] else []), unit(o["template"], instance))
            ok, detail = self.wait_healthy(instance)
            if not ok:
                self.run(["systemctl", "disable" if o["enable"] else "stop", *(["--now"] if o["enable"] else []), unit(o["template"], instance)])
                self.steps.append(f"{unit(o['template'], instance)} unhealthy ({detail}); stopped, not added; rollout stopped")
                result["failed_instance"] = instance
                raise ScaleError(f"health_url: {unit(o['template'], instance)} did not become healthy within {o['health_timeout']}s "
                                 f"({detail}); it was stopped and not added to the load balancer, the rollout stopped there",
                                 option="health_url", partial=self.finish(result))
            self.steps.append(f"{unit(o['template'], instance)} healthy ({detail})")
            try:
                self.set_members([self.server(i) for i in sorted(set(current) | {instance}, key=sort_key)])
            except ScaleError as exc:
                # Not in the balancer, so not serving: stop it rather than leave an orphan running.
                self.run(["systemctl", "disable" if o["enable"] else "stop", *(["--now"] if o["enable"] else []), unit(o["template"], instance)])
                self.steps.append(f"{unit(o['template'], instance)} stopped: the balancer could not take it")
                result["failed_instance"] = instance
                raise ScaleError(str(exc), option=exc.option, partial=self.finish(result)) from None
            current = sorted(set(current) | {instance}, key=sort_key)
            result["started"].append(instance)
        return self.finish(result)

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        result["instances"] = sorted(running_instances(self.run, self.o["template"]), key=sort_key)
        result["members"] = self.members()
        result["steps"] = self.steps
        result["changed"] = bool(result["started"] or result["stopped"] or self.steps)
        return result


def unit_active(run: Runner, name: str) -> bool:
    return run(["systemctl", "is-active", "--quiet", name])[0] == 0


class HostUnit:
    """``mode=host``: this host's unit running and healthy (V(started)) or stopped; one standby host of a rollout."""

    def __init__(self, o: dict[str, Any], run: Runner, check_mode: bool):
        self.o, self.run, self.check = o, run, check_mode
        self.steps: list[str] = []

    def _systemctl(self, verb: str) -> None:
        o = self.o
        argv = ["systemctl", *({"start": ["enable", "--now"], "stop": ["disable", "--now"]}[verb] if o["enable"] else [verb]), o["unit"]]
        rc, _out, err = self.run(argv)
        if rc != 0:
            raise ScaleError(f"unit: {' '.join(argv)} failed: {err.strip()[-300:]}", option="unit")
        self.steps.append(" ".join(argv))

    def apply(self) -> dict[str, Any]:
        o = self.o
        was_active = unit_active(self.run, o["unit"])
        want = o["state"] == "started"
        result: dict[str, Any] = {"unit": o["unit"], "active_before": was_active, "steps": self.steps,
                                  "diff": {"before": f"{o['unit']}: {'active' if was_active else 'inactive'}\n",
                                           "after": f"{o['unit']}: {'active, healthy' if want else 'inactive'}\n"}}
        if not want:
            if was_active and not self.check:
                self._systemctl("stop")
            result.update({"changed": was_active, "active": False if not self.check else was_active})
            return result
        if was_active:  # running: only prove it is healthy; a running unit that is not healthy is left as it is
            ok, detail = wait_healthy(o["health_url"], o)
            result.update({"changed": False, "active": True, "health": detail})
            if not ok:
                raise ScaleError(f"health_url: {o['unit']} is running but {o['health_url']} did not pass within {o['health_timeout']}s "
                                 f"({detail}); left as it is", option="health_url", partial=result)
            return result
        if self.check:
            result.update({"changed": True, "active": False})
            return result
        self._systemctl("start")
        ok, detail = wait_healthy(o["health_url"], o)
        result.update({"changed": True, "health": detail})
        if not ok:
            self._systemctl("stop")
            self.steps.append(f"{o['unit']} unhealthy ({detail}); stopped again")
            result["active"] = unit_active(self.run, o["unit"])
            raise ScaleError(f"health_url: {o['unit']} did not become healthy within {o['health_timeout']}s ({detail}); it was stopped "
                             "again and must not be added to the load balancer", option="health_url", partial=result)
        self.steps.append(f"{o['unit']} healthy ({detail})")
        result["active"] = True
        return result


class Members:
    """``mode=members``: make O(members) present in (or absent from) the balancer, health-gated from the balancer's side."""

    def __init__(self, o: dict[str, Any], run: Runner, check_mode: bool):
        self.o, self.run, self.check = o, run, check_mode
        self.steps: list[str] = []
        self.lb = LoadBalancer(o, run, self.steps)

    def apply(self) -> dict[str, Any]:
        o = self.o
        current = self.lb.entries()
        given = [parse_entry(e) for e in o["members"]]
        addresses = {address for _name, address in given}
        if o["members_state"] == "present":
            target = current + [e for e in given if e[1] not in {a for _n, a in current}]
        elif o["members_state"] == "absent":
            target = [e for e in current if e[1] not in addresses]
        else:
            target = given
        before = [a for _n, a in current]
        after = [a for _n, a in target]
        added = [a for a in after if a not in before]
        removed = [a for a in before if a not in after]
        result: dict[str, Any] = {"members_before": before, "added": added, "removed": removed, "steps": self.steps,
                                  "diff": {"before": "members: " + (", ".join(before) or "(none)") + "\n",
                                           "after": "members: " + (", ".join(after) or "(none)") + "\n"}}
        if len(after) < o["min_members"]:
            raise ScaleError(f"members: {len(after)} members would be left, fewer than min_members={o['min_members']}; nothing was changed",
                             option="min_members", partial=result)
        runtime = None if self.check else self._runtime_or_none()
        in_sync = runtime is None or sorted(runtime) == sorted(after)
        changed = bool(added or removed) or not in_sync
        result["changed"] = changed
        if self.check or not changed:
            result["members"] = before if self.check else after
            return result
        for address in added if o["health_url"] else []:  # the balancer's own view: it must reach a member before it gets traffic
            url = o["health_url"].format(server=address)
            ok, detail = wait_healthy(url, o)
            if not ok:
                raise ScaleError(f"health_url: {url} did not pass within {o['health_timeout']}s ({detail}); {address} was not added, "
                                 "nothing was changed", option="health_url", partial=dict(result, changed=False, members=before))
            self.steps.append(f"{address} healthy from the balancer ({detail})")
        self.lb.apply(target)
        if removed and o["drain"] > 0:
            time.sleep(o["drain"])
            self.steps.append(f"drained {', '.join(removed)} for {o['drain']}s")
        result["members"] = [a for _n, a in self.lb.entries()]
        return result

    def _runtime_or_none(self) -> dict[str, dict[str, str]] | None:
        try:
            return self.lb.runtime()
        except OSError:
            return None
