"""Keep requests flowing to the lab's apps: mixed endpoints at a bounded rate, loopback only.

    traffic.py --targets http://127.0.0.1:18001,http://127.0.0.1:18002 [--rate 15] [--duration 0]

Runs until SIGTERM/SIGINT (or --duration seconds); prints a count of answers by
status every --report seconds. Standard library only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from urllib.parse import urlsplit

MAX_RATE = 50.0
CLIENTS = 6  # concurrent clients sharing the rate
# never through a proxy from the environment: targets are loopback addresses
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
LAB_USER = "avery.mensah@residency.lab"  # a resident of the generated data (seed 0)
LAB_PASSWORD = "lab-password"

# (method, path, weight): roughly how clients use the real backend
REQUESTS = (
    ("GET", "/api/v1/schedules", 30),
    ("GET", "/api/v1/assignments", 22),
    ("GET", "/api/v1/people", 20),
    ("GET", "/health", 10),
    ("POST", "/api/v1/auth/login", 12),
    ("POST", "/api/v1/auth/login#bad", 3),  # a mistyped password now and then
    ("GET", "/api/v1/export", 3),
)
WEIGHTS = [weight for _method, _path, weight in REQUESTS]


def loopback_url(text: str) -> str:
    url = text.rstrip("/")
    parts = urlsplit(url)
    try:
        loopback = parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise argparse.ArgumentTypeError(f"targets must be http://127.x.x.x:PORT addresses, not {text!r}")
    return url


class Traffic:
    def __init__(self, targets: list[str], rate: float, timeout: float, user: str, password: str):
        self.targets = targets
        self.interval = 1.0 / rate
        self.timeout = timeout
        self.user, self.password = user, password
        self.stop = threading.Event()
        self.counts: Counter = Counter()
        self.lock = threading.Lock()
        self.tokens: dict[str, str] = {}
        self.rng = random.Random()

    def call(self, target: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, bytes]:
        headers = {"content-type": "application/json", "user-agent": "lab-traffic/1"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(target + path, data=data, method=method, headers=headers)
        try:
            with OPENER.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""  # connection refused / timeout: counted as status 0

    def login(self, target: str, password: str) -> tuple[int, str | None]:
        status, payload = self.call(target, "POST", "/api/v1/auth/login", {"username": self.user, "password": password})
        token = None
        if status == 200:
            try:
                token = json.loads(payload)["access_token"]
            except (ValueError, KeyError):
                token = None
        return status, token

    def one_request(self) -> None:
        target = self.rng.choice(self.targets)
        method, path = self.rng.choices(REQUESTS, weights=WEIGHTS)[0][:2]
        if path.startswith("/api/v1/auth/login"):
            status, token = self.login(target, LAB_PASSWORD + "-typo" if path.endswith("#bad") else self.password)
            if token:
                self.tokens[target] = token
        else:
            if path.startswith("/api/") and target not in self.tokens:
                token = self.login(target, self.password)[1]
                if token:
                    self.tokens[target] = token
            status = self.call(target, method, path, token=self.tokens.get(target))[0]
            if status == 401:
                self.tokens.pop(target, None)
        with self.lock:
            self.counts[(target, status)] += 1

    def client(self, started: float, duration: float, interval: float) -> None:
        """One client: paced, not bursty; a slow answer delays this client's next request only."""
        next_at = started + self.rng.random() * interval
        self.stop.wait(max(0.0, next_at - time.monotonic()))
        while not self.stop.is_set():
            if duration and time.monotonic() - started >= duration:
                break
            self.one_request()
            next_at = max(next_at + interval, time.monotonic() - interval)
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def run(self, duration: float, report_every: float, clients: int = CLIENTS) -> None:
        """``clients`` concurrent clients share the rate, so one slow backend does not starve the others."""
        started = time.monotonic()
        threads = [threading.Thread(target=self.client, args=(started, duration, self.interval * clients), daemon=True)
                   for _client in range(clients)]
        for thread in threads:
            thread.start()
        while not self.stop.wait(report_every):
            if duration and time.monotonic() - started >= duration:
                break
            self.report()
        self.stop.set()
        for thread in threads:
            thread.join(timeout=self.timeout + 1)
        self.report()

    def report(self) -> None:
        with self.lock:
            snapshot = dict(self.counts)
        by_target: dict[str, dict] = {}
        for (target, status), count in sorted(snapshot.items()):
            by_target.setdefault(target, {})[str(status)] = count
        print(time.strftime("%Y-%m-%dT%H:%M:%S%z"), "answers by status:", json.dumps(by_target), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", required=True, type=lambda t: [loopback_url(u) for u in t.split(",") if u.strip()],
                        help="comma-separated base URLs (loopback only)")
    parser.add_argument("--rate", type=float, default=15.0, help=f"requests per second over all targets (max {MAX_RATE:g})")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until stopped)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in seconds")
    parser.add_argument("--report", type=float, default=30.0, help="seconds between status reports")
    parser.add_argument("--user", default=LAB_USER)
    args = parser.parse_args(argv)
    if not args.targets:
        parser.error("--targets: give at least one URL")
    if not 0 < args.rate <= MAX_RATE:
        parser.error(f"--rate must be more than 0 and at most {MAX_RATE:g}, not {args.rate}")
    traffic = Traffic(args.targets, args.rate, args.timeout, args.user, LAB_PASSWORD)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: traffic.stop.set())
    print(f"traffic: {args.rate:g} req/s to {', '.join(args.targets)}", flush=True)
    traffic.run(args.duration, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
