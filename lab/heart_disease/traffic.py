"""Client traffic for the lab: normal patients, drifted inputs, and an attacker using a leaked key.

    python -m lab.heart_disease.traffic --home DIR [--rate 2] [--duration 0]

Runs until stopped (or for ``--duration`` seconds), sending ``--rate`` predictions a second from
127.0.0.1 and following the faults that are on (``.lab/faults.json``): with ``drift`` the inputs are
shifted, with ``leaked_credential`` a burst from odd loopback addresses (127.66.6.x) uses the leaked key.
Every address is in 127.0.0.0/8: all of it stays on this machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import secrets
import sys
import time
from urllib.parse import urlsplit

from . import dataset
from .common import DEFAULT_API_PORT, Home, load_config

ATTACKER_NETWORK = "127.66.6."  # source addresses of the leaked-key spray: 127.66.6.10 - 127.66.6.49


def api_url(home: Home) -> str:
    """Where the API listens: ``run/api.json`` written by the running API, else the config."""
    try:
        bound = json.loads((home.run / "api.json").read_text())
        return f"http://{bound['host']}:{bound['port']}"
    except (OSError, ValueError, KeyError):
        api = load_config(home).get("api", {})
        return f"http://{api.get('host', '127.0.0.1')}:{api.get('port', DEFAULT_API_PORT)}"


class Client:
    """A tiny HTTP client that can pick its loopback source address (requests cannot)."""

    def __init__(self, base_url: str, source_ip: str | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.source_ip = source_ip
        self.timeout = timeout

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, object]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                                source_address=(self.source_ip, 0) if self.source_ip else None)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw.decode(errors="replace")
        finally:
            connection.close()


def patients(count: int, seed: int | None = None, drift: bool = False) -> list[dict]:
    X = dataset.generate(count, seed if seed is not None else random.randrange(1 << 30), drift=drift)[0]
    return [dataset.row_to_dict(row) for row in X]


def send_batch(home: Home, count: int, drift: bool = False, seed: int | None = None, chunk: int = 50,
               api_key: str | None = None) -> int:
    """Score ``count`` patients through /predict/batch as the normal client; returns how many were scored."""
    client = Client(api_url(home))
    key = api_key or load_config(home)["api"]["auth"]["api_keys"][0]
    rows = patients(count, seed, drift)
    scored = 0
    for start in range(0, len(rows), chunk):
        status, body = client.request("POST", "/predict/batch", {"instances": rows[start:start + chunk]},
                                      {"X-API-Key": key})
        if status == 200:
            scored += body["count"]
    return scored


def spray(home: Home, leaked_key: str, valid_requests: int = 40, invalid_requests: int = 30,
          seed: int | None = None) -> dict:
    """An attacker with a leaked key: tokens and predictions from many odd addresses, plus guessed keys."""
    rng = random.Random(seed)
    base = api_url(home)
    statuses: dict[str, dict[int, int]] = {"leaked_key": {}, "guessed_key": {}}
    rows = patients(valid_requests, seed)
    for number in range(valid_requests):
        client = Client(base, source_ip=f"{ATTACKER_NETWORK}{rng.randint(10, 49)}")
        status, body = client.request("POST", "/auth/token", {"api_key": leaked_key})
        if status == 200 and number % 2 == 0:
            status = client.request("POST", "/predict", rows[number],
                                    {"Authorization": f"Bearer {body['access_token']}"})[0]
        elif status == 200:
            status = client.request("GET", "/models/info", headers={"Authorization": f"Bearer {body['access_token']}"})[0]
        statuses["leaked_key"][status] = statuses["leaked_key"].get(status, 0) + 1
    for number in range(invalid_requests):
        client = Client(base, source_ip=f"{ATTACKER_NETWORK}{rng.randint(10, 49)}")
        guess = "hdk_" + secrets.token_hex(20)
        status = client.request("POST", "/predict", rows[number % len(rows)] if rows else {}, {"X-API-Key": guess})[0]
        statuses["guessed_key"][status] = statuses["guessed_key"].get(status, 0) + 1
    return statuses


def fault_flags(home: Home) -> dict:
    try:
        return json.loads((home.lab_state / "faults.json").read_text())
    except (OSError, ValueError):
        return {}


def run(home: Home, rate: float, duration: float) -> None:
    """Steady traffic that follows the faults that are on."""
    deadline = time.monotonic() + duration if duration > 0 else None
    client = Client(api_url(home))
    key = load_config(home)["api"]["auth"]["api_keys"][0]
    last_spray = 0.0
    while deadline is None or time.monotonic() < deadline:
        flags = fault_flags(home)
        drift = bool(flags.get("drift", {}).get("on"))
        row = patients(1, drift=drift)[0]
        try:
            client.request("POST", "/predict", row, {"X-API-Key": key})
            leak = flags.get("leaked_credential", {})
            if leak.get("on") and leak.get("key") and time.monotonic() - last_spray > 60:
                spray(home, leak["key"], valid_requests=20, invalid_requests=15)
                last_spray = time.monotonic()
        except OSError as exc:  # the API may be down: that is an incident to observe, not a reason to stop
            print(f"traffic: {exc}", file=sys.stderr)
        time.sleep(1.0 / rate if rate > 0 else 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.heart_disease.traffic", description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--rate", type=float, default=2.0, help="predictions per second")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until stopped")
    args = parser.parse_args(argv)
    try:
        run(Home.of(args.home), args.rate, args.duration)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
