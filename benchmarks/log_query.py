# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark sre.runbooks' log_query against grep on a large Residency-Scheduler-shaped JSON log.

Usage: .venv/bin/python benchmarks/log_query.py [--size-mib 512] [--cache-dir DIR] [--regenerate]

The log (flat Loguru-shaped JSON, three days, ~5 % errors of several exception types, auth failures
with an attack in the last hours) is generated once and cached; later runs reuse it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO_ROOT / ".cache" / "bench"
END_TIME = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
SPAN = timedelta(days=3)

LOGGERS_INFO = [
    ("app.api.routes.schedule", "routes", "get_schedule"),
    ("app.api.routes.assignments", "routes", "create_assignment"),
    ("app.services.scheduler", "scheduler", "solve_block"),
    ("app.services.cache", "cache", "get"),
    ("uvicorn.access", "httptools_impl", "send"),
]
ENDPOINTS = ["/api/v1/schedules", "/api/v1/assignments", "/api/v1/people", "/api/v1/blocks", "/api/v1/compliance", "/api/v1/auth/login"]
ACCOUNTS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy", "trent"]


def _traceback(exc_type: str, value: str, depth: int) -> str:
    frames = []
    for i in range(depth):
        frames.append(f'  File "/app/app/services/module_{i}.py", line {40 + i * 7}, in handler_{i}\n    result = await step_{i}(session, payload)\n')
    return "Traceback (most recent call last):\n" + "".join(frames) + f"{exc_type}: {value}\n"


def _error(rng: random.Random) -> tuple[str, str, str, str, str]:
    """Return (logger, message, exception type, exception value, endpoint) for one error of a weighted kind."""
    kind = rng.random()
    ident = str(uuid.UUID(int=rng.getrandbits(128)))
    if kind < 0.35:
        value = f'connection to server at "db" (10.0.0.{rng.randint(2, 250)}), port 5432 failed: timeout expired after {rng.randint(5, 30)}s'
        return "app.db.session", f"Database query failed: {value}", "OperationalError", value, rng.choice(ENDPOINTS[:5])
    if kind < 0.55:
        other = str(uuid.UUID(int=rng.getrandbits(128)))
        value = f'duplicate key value violates unique constraint "assignments_block_id_person_id_key" Key (block_id, person_id)=({ident}, {other})'
        return "app.api.routes.assignments", f"Could not save assignment {ident}: {value}", "IntegrityError", value, "/api/v1/assignments"
    if kind < 0.72:
        value = f"Redis command GET schedule:{rng.randint(1, 99999)} timed out after {rng.choice([500, 1000, 5000])} ms"
        return "app.services.cache", value, "TimeoutError", value, "/api/v1/schedules"
    if kind < 0.86:
        value = f"1 validation error for AssignmentCreate role: value is not a valid enumeration member; got 'chief{rng.randint(1, 9)}'"
        return "app.api.routes.assignments", value, "ValidationError", value, "/api/v1/assignments"
    if kind < 0.95:
        value = f"Resident {ident} exceeds 80h weekly limit: {80 + rng.random() * 10:.1f}h"
        return "app.services.compliance", f"ACGME check failed for {ident}", "ACGMEComplianceError", value, "/api/v1/compliance"
    value = f"'person_{rng.randint(1, 999)}'"
    return "app.services.scheduler", f"Unexpected error while solving block {rng.randint(1, 730)}", "KeyError", value, "/api/v1/schedules"


def generate(path: Path, size_bytes: int, seed: int = 20261123) -> None:
    """Write a flat-JSON log of about ``size_bytes``, oldest first, ending at END_TIME."""
    rng = random.Random(seed)
    start = END_TIME - SPAN
    span = SPAN.total_seconds()
    attack_start = END_TIME - timedelta(hours=2)
    home_ips = {account: [f"10.20.{i}.{10 + n}" for i in range(2)] for n, account in enumerate(ACCOUNTS)}
    tmp = path.with_suffix(".tmp")
    written = 0
    t = start.timestamp()
    with open(tmp, "w", encoding="utf-8") as out:
        batch = []
        i = 0
        while written < size_bytes:
            # Time follows the bytes written, so the file spans SPAN whatever the mix; jitter keeps it irregular.
            t = max(t, start.timestamp() + span * written / size_bytes + rng.uniform(-0.2, 0.2))
            ts = datetime.fromtimestamp(t, tz=timezone.utc)
            roll = rng.random()
            rec = {
                "timestamp": ts.isoformat(timespec="microseconds"),
                "level": "INFO",
                "logger": "",
                "message": "",
                "module": "",
                "function": "",
                "line": rng.randint(10, 400),
                "exception": None,
                "process": 4100 + rng.randint(0, 3),
                "thread": 139800000000 + rng.randint(0, 7),
                "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            }
            if roll < 0.05:
                logger, message, etype, evalue, endpoint = _error(rng)
                rec.update(level="ERROR", logger=logger, message=message, module=logger.rsplit(".", 1)[-1], function="handle", endpoint=endpoint)
                rec["exception"] = {"type": etype, "value": evalue, "traceback": _traceback(etype, evalue, rng.randint(2, 6))}
            elif roll < 0.0515:
                rec.update(level="CRITICAL", logger="app.db.pool", message=f"Database connection pool exhausted (active={rng.randint(95, 100)}, max=100)",
                           module="pool", function="acquire")
            elif roll < 0.0615:
                # Benign: people mistyping their own password from one of their two addresses.
                account = rng.choice(ACCOUNTS)
                ip = rng.choice(home_ips[account])
                rec.update(level="WARNING", logger="app.core.security", message=f"auth_failure ip={ip} account={account} reason=bad_password",
                           module="security", function="authenticate", endpoint="/api/v1/auth/login", event="auth_failure", ip=ip, account=account)
            elif roll < 0.12:
                rec.update(level="WARNING", logger="app.services.scheduler", message=f"Slow solve for block {rng.randint(1, 730)}: {rng.uniform(2, 9):.2f}s",
                           module="scheduler", function="solve_block")
            elif roll < 0.125:
                # Decoy: INFO lines whose message mentions ERROR must never count as errors.
                rec.update(logger="app.services.upstream", message="Upstream returned ERROR 503, retrying (\"level\": \"ERROR\" in body)",
                           module="upstream", function="call")
            else:
                logger, module, function = rng.choice(LOGGERS_INFO)
                endpoint = rng.choice(ENDPOINTS)
                rec.update(logger=logger, module=module, function=function, endpoint=endpoint,
                           message=f"GET {endpoint}/{rng.randint(1, 5000)} 200 {rng.uniform(1, 250):.1f}ms", status=200,
                           duration_ms=round(rng.uniform(1, 250), 1))
            line = json.dumps(rec) + "\n"
            batch.append(line)
            written += len(line)
            if ts >= attack_start and i % 50 == 0:
                # The attack: one machine-regular IP spraying many accounts, and a botnet on one account.
                account = ACCOUNTS[(i // 50) % len(ACCOUNTS)]
                for ip, acct in (("203.0.113.66", account), (f"198.51.100.{rng.randint(1, 250)}", "admin")):
                    att = dict(rec, level="WARNING", logger="app.core.security", module="security", function="authenticate", exception=None,
                               message=f"auth_failure ip={ip} account={acct} reason=bad_password", event="auth_failure", ip=ip, account=acct,
                               endpoint="/api/v1/auth/login")
                    line = json.dumps(att) + "\n"
                    batch.append(line)
                    written += len(line)
            i += 1
            if len(batch) >= 5000:
                out.write("".join(batch))
                batch = []
        out.write("".join(batch))
    os.replace(tmp, path)


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (forked workers, grep)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(func, repeat: int = 3):
    """Best of ``repeat`` runs: (wall seconds, CPU seconds, last result)."""
    best = best_cpu = None
    result = None
    for _attempt in range(repeat):
        c0, t0 = _cpu(), time.perf_counter()
        result = func()
        elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
        best = elapsed if best is None else min(best, elapsed)
        best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
    return best, best_cpu, result


def shell(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, env=dict(os.environ, LC_ALL="C.UTF-8")).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs (the VM is shared: timings vary)")
    parser.add_argument("--only", choices=["all", "auth"], default="all", help="auth: only the authentication-failure rows")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO_ROOT / ".collections"))
    conftest_link = REPO_ROOT / ".collections" / "ansible_collections" / "sre" / "runbooks"
    if not conftest_link.exists():
        conftest_link.parent.mkdir(parents=True, exist_ok=True)
        conftest_link.symlink_to(Path("../../.."))
    from ansible_collections.sre.runbooks.plugins.module_utils import _log_query as lq  # pylint: disable=import-outside-toplevel

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    log = args.cache_dir / f"scheduler-{args.size_mib}mib.log"
    if args.regenerate or not log.exists():
        t0 = time.perf_counter()
        generate(log, args.size_mib * 1024 * 1024)
        print(f"generated {log} in {time.perf_counter() - t0:.1f}s")
    size = log.stat().st_size
    shell(f"cat {log} > /dev/null")  # warm the page cache so both sides read from memory
    now = END_TIME.isoformat()
    rows = []

    def compare(name, query, grep_cmd, check):
        t_lq, cpu_lq, res = timed(lambda: lq.run_query(query), args.repeat)
        t_grep, cpu_grep, out = timed(lambda: shell(grep_cmd), args.repeat) if grep_cmd else (None, None, None)
        agree = check(res, out) if grep_cmd else ""
        rows.append((name, t_lq, t_grep, agree, res, cpu_lq, cpu_grep, query))

    p = str(log)
    if args.only == "all":
        other_rows(compare, lq, p, now)
    auth_rows(compare, p)

    # Once through the module's main() (a new Python importing Ansible, as a task would) on the first row's query.
    first_query = rows[0][7] if args.only == "all" else {"path": p, "mode": "auth", "top": 10}
    report(args, log, size, rows, first_query)
    return 0


def other_rows(compare, lq, p, now):
    """Level, search, regex and time-window queries against grep."""
    compare("level ERROR (exact)", {"path": p, "levels": ["ERROR"], "group_by": "none"},
            f"grep -c '\"level\": \"ERROR\"' {p}", lambda r, o: r["matched"] == int(o))
    lq.AT_REST_SECONDS = 10 ** 9  # read it the way a log still being written is read (preadv, not mmap)
    compare("level ERROR (exact), live reader", {"path": p, "levels": ["ERROR"], "group_by": "none"},
            f"grep -c '\"level\": \"ERROR\"' {p}", lambda r, o: r["matched"] == int(o))
    lq.AT_REST_SECONDS = 300
    compare("level ERROR (exact), 1 process", {"path": p, "levels": ["ERROR"], "group_by": "none", "workers": 1},
            f"grep -c '\"level\": \"ERROR\"' {p}", lambda r, o: r["matched"] == int(o))
    compare("level >= ERROR", {"path": p, "level": "ERROR", "group_by": "none"},
            f"grep -cE '\"level\": \"(ERROR|CRITICAL)\"' {p}", lambda r, o: r["matched"] == int(o))
    compare("level >= ERROR, by fingerprint", {"path": p, "level": "ERROR"},
            f"grep -cE '\"level\": \"(ERROR|CRITICAL)\"' {p}", lambda r, o: r["matched"] == int(o))
    compare("search 'timed out'", {"path": p, "search": "timed out", "group_by": "none"},
            f"grep -c 'timed out' {p}", lambda r, o: r["matched"] == int(o))
    compare("regex 'timed out after \\d+ ms'", {"path": p, "regex": r"timed out after \d+ ms", "group_by": "none"},
            f"grep -cP 'timed out after \\d+ ms' {p}", lambda r, o: r["matched"] == int(o))
    compare("last hour, all levels", {"path": p, "since": "1h", "now": now}, None, None)
    compare("last hour, all levels, 1 process", {"path": p, "since": "1h", "now": now, "workers": 1}, None, None)
    compare("last hour, level ERROR", {"path": p, "since": "1h", "level": "ERROR", "now": now}, None, None)


def _uniq_c(out: str) -> dict:
    """``sort | uniq -c`` output → {value: count}."""
    counts = {}
    for line in out.splitlines():
        n, value = line.strip().split(None, 1)
        counts[value] = int(n)
    return counts


def auth_rows(compare, p):
    """mode=auth (one pass: by IP, by account, distinct partners, timing, timeline) against the grep pipelines that
    give the same tables. The pipelines' counts must equal log_query's, row by row."""
    everything = 10 ** 6  # every IP and account, so the whole tables can be compared

    def by_ip_ok(res, out):
        return _uniq_c(out) == {row["key"]: row["count"] for row in res["auth"]["by_ip"]}

    def by_account_ok(res, out):
        return _uniq_c(out) == {row["key"]: row["count"] for row in res["auth"]["by_account"]}

    def pairs_ok(res, out):
        accounts: dict = {}
        for pair in _uniq_c(out):
            ip = pair.split()[0][len("ip="):]
            accounts[ip] = accounts.get(ip, 0) + 1
        return accounts == {row["key"]: row["accounts"] for row in res["auth"]["by_ip"]}

    query = {"path": p, "mode": "auth", "top": everything, "group_by": "none"}
    compare("auth: by ip", query,
            f"grep auth_failure {p} | grep -oP 'ip=\\K[^\" ]+' | sort | uniq -c", by_ip_ok)
    compare("auth: by account", query,
            f"grep auth_failure {p} | grep -oP 'account=\\K[^\" ]+' | sort | uniq -c", by_account_ok)
    compare("auth: accounts per ip", query,
            f"grep auth_failure {p} | grep -oP 'ip=[^\" ]+ account=[^\" ]+' | sort | uniq -c", pairs_ok)


def report(args, log, size, rows, first_query):
    p = str(log)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ansible_collections.sre.runbooks.plugins.modules.log_query"],
                          input=json.dumps({"ANSIBLE_MODULE_ARGS": first_query}),
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT / ".collections")), check=False)
    t_module = time.perf_counter() - t0
    module_ok = proc.returncode == 0 and json.loads(proc.stdout).get("matched") == rows[0][4]["matched"]

    print(f"\nfile: {log}  size: {size / 1048576:.1f} MiB ({size} bytes)\n")
    print("grep/lq > 1 means log_query is faster; 'same count' checks log_query's count against grep's.")
    print(f"{'query':34} {'log_query s':>11} {'MiB/s':>8} {'grep s':>8} {'grep/lq':>8} {'same count':>10}  workers  {'CPU s lq/grep':>14}  matched / groups")
    for name, t_lq, t_grep, agree, res, cpu_lq, cpu_grep, _query in rows:
        ratio = f"{t_grep / t_lq:8.2f}" if t_grep else f"{'-':>8}"
        tg = f"{t_grep:8.3f}" if t_grep else f"{'-':>8}"
        groups = len(res.get("groups", [])) if "auth" not in res else len(res["auth"]["by_ip"])
        bisect = any(f.get("bisected") for f in res["files"])
        rate = f"{'-':>8}" if bisect else f"{size / 1048576 / t_lq:8.0f}"
        workers = max(f.get("workers", 1) for f in res["files"])
        cpu = f"{cpu_lq:6.3f} / {cpu_grep:5.3f}" if cpu_grep else f"{cpu_lq:6.3f} /     -"
        print(f"{name:34} {t_lq:11.3f} {rate} {tg} {ratio} {str(agree):>10}  {workers:7}  {cpu:>14}  {res['matched']} / {groups}"
              f"{'  (bisected)' if bisect else ''}")
    print(f"{'module main(), row 1 (subprocess)':34} {t_module:11.3f} {'':8} {'':8} {'':8} {str(module_ok):>10}"
          f"  wrapper + start-up {t_module - rows[0][1]:.2f}s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    print(f"\nload average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs "
          "(other work on a shared machine slows both sides and takes the second CPU's workers away)")
    print(f"peak RSS of this process: {rss:.1f} MiB (file is {size / 1048576:.0f} MiB)")
    auth_results = [row for row in rows if "auth" in row[4]]
    if auth_results:
        auth = auth_results[0][4]["auth"]
        grep_total = sum(row[2] for row in auth_results)
        print(f"\nauth: one log_query pass {auth_results[0][1]:.3f}s gives all three tables (and indicators, timeline); "
              f"the three grep pipelines take {grep_total:.3f}s together: ratio {grep_total / auth_results[0][1]:.2f}")
        print(f"auth: {auth['failures']} failures, {auth['distinct_ips']} IPs, {auth['distinct_accounts']} accounts")
        print("auth indicators:", json.dumps(auth["indicators"], indent=None)[:600])
        print("auth timeline peak:", auth["timeline"]["peak"], "bucket", auth["timeline"]["bucket_seconds"], "s")


if __name__ == "__main__":
    sys.exit(main())
