"""A throwaway redis-server on a free loopback port, for integration tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import free_port


class RedisServer:
    """Debian's redis-server with no persistence, bound to 127.0.0.1 and a unix socket in ``workdir``."""

    def __init__(self, workdir: Path, *extra_args: str, tls: bool = False):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.port = free_port()
        # unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer
        self.socket_dir = tempfile.mkdtemp(prefix="redis-")
        self.socket_path = os.path.join(self.socket_dir, "redis.sock")
        self.workdir = workdir
        listen = ["--port", str(self.port)]
        if tls:
            # a self-signed certificate for 127.0.0.1; the unix socket stays plain for setup commands
            self.cert = workdir / "cert.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(workdir / "key.pem"),
                            "-out", str(self.cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.cert),
                      "--tls-key-file", str(workdir / "key.pem"), "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [binary, *listen, "--bind", "127.0.0.1", "--unixsocket", self.socket_path,
             "--save", "", "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
             "--logfile", str(workdir / "redis.log"), *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                log = (workdir / "redis.log").read_text(errors="replace") if (workdir / "redis.log").exists() else ""
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log[-2000:]}")
            try:
                if self.raw("PING") in ("+PONG", "-NOAUTH Authentication required."):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not answer PING within 15s")
            time.sleep(0.1)

    def raw(self, *args: str, password: str | None = None) -> str:
        """Send one command over the unix socket (independent of the client under test); return the first reply line."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(self.socket_path)
            commands = ([("AUTH", password)] if password else []) + [args]
            payload = b""
            for command in commands:
                payload += b"*%d\r\n" % len(command)
                for arg in command:
                    data = str(arg).encode()
                    payload += b"$%d\r\n%s\r\n" % (len(data), data)
            sock.sendall(payload)
            stream = sock.makefile("rb")
            line = b""
            for _command in commands:
                line = stream.readline().rstrip(b"\r\n")
                if line.startswith(b"$") and int(line[1:]) >= 0:
                    line = stream.readline().rstrip(b"\r\n")
            return line.decode()

    def cli(self, *args: str) -> str:
        """redis-cli for bulk setup (pipes many commands quickly)."""
        return subprocess.run(["redis-cli", "-s", self.socket_path, *args], check=True, capture_output=True, text=True).stdout

    def pipe(self, commands: list[list[str]]) -> None:
        """Load many commands through redis-cli --pipe."""
        payload = "".join(
            f"*{len(command)}\r\n" + "".join(f"${len(str(arg).encode())}\r\n{arg}\r\n" for arg in command) for command in commands
        )
        subprocess.run(["redis-cli", "-s", self.socket_path, "--pipe"], input=payload, check=True, capture_output=True, text=True)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@pytest.fixture()
def redis_server(tmp_path):
    """A fresh, empty Redis per test (starting one takes about 50 ms)."""
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()
