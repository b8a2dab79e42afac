"""LowCacheHitRate through ansible-playbook against a real redis-server that is too small for its working set.

A writer fills a 2 MiB Redis (allkeys-lru) while a reader asks for keys it wrote a little earlier, so keys
are evicted before they are read again. The playbook must name evictions as the cause, change nothing
without runbook_remediate, raise maxmemory by half with it, and leave Redis alone once evictions stop.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.integration._playbooks import local_host, run_playbook as run
from tests.integration._redis import RedisServer

pytestmark = pytest.mark.integration

MAXMEMORY = 2 * 1024 * 1024


class Churn(threading.Thread):
    """Writes 2 KiB values and reads the ones written 600 keys earlier, over one plain RESP connection."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.stop_event = threading.Event()

    def run(self):
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            reader = sock.makefile("rb")
            value = "x" * 2048
            n = 0
            while not self.stop_event.is_set():
                commands = []
                for i in range(n, n + 50):
                    commands.append(f"*3\r\n$3\r\nSET\r\n${len(f'schedule:{i}')}\r\nschedule:{i}\r\n${len(value)}\r\n{value}\r\n")
                    old = f"schedule:{max(i - 600, 0)}"
                    commands.append(f"*2\r\n$3\r\nGET\r\n${len(old)}\r\n{old}\r\n")
                sock.sendall("".join(commands).encode())
                for _reply in range(100):
                    line = reader.readline()
                    if line.startswith(b"$") and line.strip() != b"$-1":
                        reader.readline()
                n += 50
                self.stop_event.wait(0.02)


def run_playbook(tmp_path: Path, port: int, **extra) -> tuple[subprocess.CompletedProcess, dict]:
    inventory = {"all": {"children": {"cache": {"hosts": {"cache1": local_host(
        redis_host="127.0.0.1", redis_port=port, redis_persist_config=False)}}}}}
    return run(tmp_path, "low_cache_hit_rate.yml", inventory, cache_sample_seconds=3, **extra)


def test_evictions_are_the_cause_and_memory_is_raised_only_when_asked(tmp_path):
    server = RedisServer(tmp_path, "--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "allkeys-lru")
    churn = Churn(server.port)
    churn.start()
    try:
        proc, record = run_playbook(tmp_path, server.port)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert record["decision"]["evicting"] in (True, "True") and record["decision"]["cause"].startswith("evictions")
        assert server.cli("CONFIG", "GET", "maxmemory").split()[-1] == str(MAXMEMORY)  # investigation only
        assert any("remediate" in step for step in record["next_steps"])

        proc, record = run_playbook(tmp_path, server.port, runbook_remediate=True)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert server.cli("CONFIG", "GET", "maxmemory").split()[-1] == str(int(MAXMEMORY * 1.5))
        assert [a["action"] for a in record["actions"]] == ["raise Redis maxmemory"]
    finally:
        churn.stop_event.set()
        churn.join(5)
    try:
        server.cli("FLUSHALL")
        proc, _record = run_playbook(tmp_path, server.port, runbook_remediate=True)
        assert proc.returncode == 0 and "changed=0" in proc.stdout.split("PLAY RECAP")[-1]
        assert server.cli("CONFIG", "GET", "maxmemory").split()[-1] == str(int(MAXMEMORY * 1.5))
    finally:
        server.stop()
