"""Fault generators the lab runs on the machine while a fault is on (started and stopped by `lab fault`).

    faultgen.py auth_spray --targets URL[,URL] [--mode accounts|ips] [--rate 5]
    faultgen.py probes --targets URL[,URL] [--rate 2]
    faultgen.py audit_reads --targets URL[,URL] [--readers 2] [--pause 0.2]
    FAULTGEN_DSN=postgresql://... faultgen.py pg --mode connections|long_queries|idle_in_transaction [--count N]

``auth_spray``: failed logins, either from one address for many accounts (password spray) or for
one account from many addresses (credential stuffing); the address is sent as X-Forwarded-For, as
a proxy in front of the backend would. ``probes``: requests carrying injection and traversal
patterns. ``audit_reads``: the coordinators' dashboard reading the activity feed
(``/api/v1/audit``), each reader one request at a time (the slow-query fault's read path).
``pg``: sessions held open in PostgreSQL: idle connections up to ``max_connections``,
long-running queries, or transactions left idle after taking row locks.
Runs until SIGTERM. Loopback targets only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STOP = threading.Event()
ATTACKER = "203.0.113.{}"  # TEST-NET-3 documentation addresses, only ever sent as a header value
COORDINATOR = "avery.mensah@residency.lab"  # a lab user (every lab user's password is lab-password)
ACCOUNTS = [f"user{i:03d}@residency.lab" for i in range(200)]
PROBE_QUERIES = ("/api/v1/people?type=resident'%20OR%20'1'='1", "/api/v1/assignments?person_id=1%20UNION%20SELECT%20password%20FROM%20users",
                 "/api/v1/schedules?start=../../etc/passwd", "/api/v1/people?type=<script>alert(1)</script>")


def loopback(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(f"targets must be loopback addresses, not {url!r}")
    return url.rstrip("/")


def send(url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 5) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def paced(rate: float, action, in_flight: int = 16) -> None:
    """ACTION RATE times a second, each in its own thread: a slow backend (a busy machine) must not slow the attack
    down, as it would if each request waited for the one before (5/s became 0.3/s at load 30)."""
    interval = 1.0 / rate
    slots = threading.BoundedSemaphore(in_flight)

    def one() -> None:
        try:
            action()
        finally:
            slots.release()

    next_at = time.monotonic()
    while not STOP.is_set():
        if slots.acquire(timeout=1):
            threading.Thread(target=one, daemon=True).start()
        next_at = max(next_at + interval, time.monotonic() - 1)
        STOP.wait(max(0.0, next_at - time.monotonic()))


def auth_spray(args) -> None:
    rng = random.Random()
    victim = "avery.mensah@residency.lab"

    def one():
        target = rng.choice(args.targets)
        if args.mode == "accounts":  # one address, many accounts
            account, address = rng.choice(ACCOUNTS), ATTACKER.format(66)
        else:  # one account, many addresses
            account, address = victim, ATTACKER.format(rng.randrange(1, 255))
        send(f"{target}/api/v1/auth/login", {"username": account, "password": f"Winter{rng.randrange(2000, 2030)}!"},
             {"x-forwarded-for": address})

    paced(args.rate, one)


def probes(args) -> None:
    rng = random.Random()
    paced(args.rate, lambda: send(rng.choice(args.targets) + rng.choice(PROBE_QUERIES), headers={"x-forwarded-for": ATTACKER.format(99)}))


def audit_reads(args) -> None:
    """READERS dashboards per target, each reading the activity feed one request after the other."""
    def reader(target: str) -> None:
        token = None
        while not STOP.is_set():
            if token is None:
                login = urllib.request.Request(f"{target}/api/v1/auth/login", method="POST", headers={"content-type": "application/json"},
                                               data=json.dumps({"username": COORDINATOR, "password": "lab-password"}).encode())
                try:
                    with OPENER.open(login, timeout=10) as response:
                        token = json.loads(response.read())["access_token"]
                except (OSError, ValueError, KeyError):
                    STOP.wait(1)
                    continue
            status = send(f"{target}/api/v1/audit?hours=24&limit=50", headers={"authorization": f"Bearer {token}"}, timeout=120)
            if status == 401:
                token = None
            STOP.wait(args.pause)

    threads = [threading.Thread(target=reader, args=(target,), daemon=True) for target in args.targets for _n in range(args.readers)]
    for thread in threads:
        thread.start()
    STOP.wait()


def pg(args) -> None:
    import psycopg  # pylint: disable=import-outside-toplevel

    held = []
    app = {"connections": "lab-connection-leak", "long_queries": "nightly-report", "idle_in_transaction": "schedule-editor"}[args.mode]
    for index in range(args.count):
        if STOP.is_set():
            break
        try:
            conn = psycopg.connect(os.environ["FAULTGEN_DSN"], autocommit=args.mode != "idle_in_transaction", application_name=app, connect_timeout=3)
        except psycopg.OperationalError as exc:
            print(f"connection {index + 1}: {str(exc).strip().splitlines()[-1]}", flush=True)
            if args.mode == "connections":
                break  # max_connections reached: that is the fault
            continue
        held.append(conn)
        if args.mode == "long_queries":
            threading.Thread(target=_long_query, args=(conn,), daemon=True).start()
        elif args.mode == "idle_in_transaction":
            # takes row locks and then waits, as an editor whose request died mid-transaction
            conn.execute("UPDATE people SET email = email WHERE id = %s", (index + 1,))
    print(f"{args.mode}: holding {len(held)} session(s)", flush=True)
    STOP.wait()
    for conn in held:
        try:
            conn.cancel()
            conn.close()
        except Exception:  # pylint: disable=broad-exception-caught
            pass


def _long_query(conn) -> None:
    try:
        # a report that scans and sorts the schedule many times over: busy for an hour unless cancelled
        conn.execute("SELECT count(*) FROM generate_series(1, 1000000000) g, LATERAL (SELECT pg_sleep(0.001)) s")
    except Exception:  # pylint: disable=broad-exception-caught
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    spray = commands.add_parser("auth_spray")
    spray.add_argument("--targets", type=lambda v: [loopback(u) for u in v.split(",")], required=True)
    spray.add_argument("--mode", choices=("accounts", "ips"), default="accounts")
    spray.add_argument("--rate", type=float, default=5.0)
    probe = commands.add_parser("probes")
    probe.add_argument("--targets", type=lambda v: [loopback(u) for u in v.split(",")], required=True)
    probe.add_argument("--rate", type=float, default=2.0)
    reads = commands.add_parser("audit_reads")
    reads.add_argument("--targets", type=lambda v: [loopback(u) for u in v.split(",")], required=True)
    reads.add_argument("--readers", type=int, choices=range(1, 5), default=2)
    reads.add_argument("--pause", type=float, default=0.2)
    database = commands.add_parser("pg")
    database.add_argument("--mode", choices=("connections", "long_queries", "idle_in_transaction"), required=True)
    database.add_argument("--count", type=int, default=3)
    args = parser.parse_args(argv)
    if getattr(args, "rate", 1.0) <= 0 or getattr(args, "rate", 1.0) > 50:
        parser.error("--rate must be more than 0 and at most 50")
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    {"auth_spray": auth_spray, "probes": probes, "audit_reads": audit_reads, "pg": pg}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
