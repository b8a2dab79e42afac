# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scale a systemd template service (``name@N``) up or down, health-gated, with load-balancer membership.

Scale up, one instance at a time: start it, wait until its health URL answers, only then add it to
the load balancer (write the upstream file, test the configuration, reload). An instance that does
not become healthy is stopped again and never reaches the load balancer; the rollout stops there.

Scale down, highest instance first: take it out of the load balancer (write, test, reload), let it
drain, then stop it. ``min_instances`` is never crossed.

The upstream file is only ever replaced atomically, and a configuration test that fails puts the
previous file back before anything is reloaded, so the balancer keeps serving the previous members.
"""

from __future__ import annotations

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


def render_upstream(lb_type: str, name: str, servers: list[str], header: str) -> str:
    lines = [f"# {header}"]
    if lb_type == "nginx":
        lines.append(f"upstream {name} {{")
        lines += [f"    server {server};" for server in servers] or ["    server 127.0.0.1:9 down;"]
        lines.append("}")
    else:  # haproxy: a backend section
        lines.append(f"backend {name}")
        lines += [f"    server {name}_{i} {server} check" for i, server in enumerate(servers, 1)]
    return "\n".join(lines) + "\n"


def parse_members(lb_type: str, text: str) -> list[str]:
    members = []
    for line in text.splitlines():
        fields = line.strip().rstrip(";").split()
        if lb_type == "nginx" and len(fields) >= 2 and fields[0] == "server" and "down" not in fields:
            members.append(fields[1])
        elif lb_type == "haproxy" and len(fields) >= 3 and fields[0] == "server":
            members.append(fields[2])
    return members


def write_atomic(path: Path, text: str) -> None:
    write_file_atomically(path, text, 0o644)


def healthy(url: str, timeout: float) -> tuple[bool, str]:
    from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel
    try:
        status = open_url(url, timeout=timeout, follow_redirects="none").status
    except HTTPError as exc:
        status = exc.code
    except (URLError, OSError) as exc:
        return False, f"unreachable ({type(exc).__name__})"
    return 200 <= status < 300, f"HTTP {status}"


class Scaler:
    def __init__(self, o: dict[str, Any], run: Runner, check_mode: bool):
        self.o, self.run, self.check = o, run, check_mode
        self.steps: list[str] = []
        self.lb_file = Path(o["lb_upstream_file"]) if o["lb_type"] != "none" else None

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
        """Write the upstream file, test the config, reload; on a failed test put the old file back."""
        if not self.lb_file:
            return
        previous = self.lb_file.read_text(encoding="utf-8") if self.lb_file.exists() else None
        write_atomic(self.lb_file, render_upstream(self.o["lb_type"], self.o["lb_name"], servers,
                                                   f"managed by sre.runbooks.scale_service ({self.o['template']}@)"))
        if self.o["lb_check_command"]:
            rc, _out, err = self.run(self.o["lb_check_command"])
            if rc != 0:
                if previous is None:
                    self.lb_file.unlink()
                else:
                    write_atomic(self.lb_file, previous)
                raise ScaleError(f"lb_check_command: the load balancer rejected the new upstream file, previous file restored: "
                                 f"{err.strip()[-300:]}", option="lb_check_command")
        rc, _out, err = self.run(self.o["lb_reload_command"])
        if rc != 0:
            raise ScaleError(f"lb_reload_command: {' '.join(self.o['lb_reload_command'])} failed: {err.strip()[-300:]}",
                             option="lb_reload_command")
        self.steps.append(f"load balancer members: {', '.join(servers) or '(none)'}")

    def wait_healthy(self, instance: str) -> tuple[bool, str]:
        url = self.o["health_url"].format(instance=instance)
        deadline = time.monotonic() + self.o["health_timeout"]
        passes, detail = 0, "not checked"
        while True:
            ok, detail = healthy(url, min(5.0, max(self.o["health_timeout"], 1.0)))
            passes = passes + 1 if ok else 0
            if passes >= self.o["health_passes"]:
                return True, detail
            if time.monotonic() >= deadline:
                return False, detail
            time.sleep(self.o["health_interval"])

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
