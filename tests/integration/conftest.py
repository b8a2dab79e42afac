"""Real services for integration tests, started on loopback by the tests themselves."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
import subprocess
import time
from pathlib import Path

import pytest
import requests


def postgres_helpers():
    """tests/integration/_postgres.py, imported after pytest loaded it as a plugin (importing it at module level
    would keep pytest from rewriting its asserts)."""
    from tests.integration import _postgres  # pylint: disable=import-outside-toplevel
    return _postgres


def wait_until(*args, **kwargs):
    """_postgres.wait_until: poll a predicate until it holds or time runs out."""
    return postgres_helpers().wait_until(*args, **kwargs)


def load_lab_module(relative: str, name: str):
    """A lab script (lab/hosts.py, lab/scheduler/db/seed.py, ...) imported as module NAME: the lab is not a package
    the tests can import, and each test file keeps its own copy (its own globals) under its own name."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[2] / "lab" / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException as exc:
            last_error = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last_error}")


class PrometheusServer:
    """A throwaway Prometheus (Debian's binary) that scrapes itself every second."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n"
            f"  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{self.port}']}}]\n"
        )
        (workdir / "rules.yml").write_text(
            "groups:\n  - name: test\n    rules:\n"
            "      - alert: AlwaysFiring\n        expr: vector(1)\n        labels: {severity: info}\n"
        )
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=(workdir / "prometheus.log").open("w"),
        )
        wait_http(f"{self.url}/-/ready", proc=self.proc)

    def wait_for_samples(self, query: str = "up", timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = requests.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=2).json()
            if data["data"]["result"]:
                return
            time.sleep(0.3)
        raise TimeoutError(f"no samples for {query} after {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory):
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    try:
        server.wait_for_samples("up")
        yield server
    finally:
        server.stop()
