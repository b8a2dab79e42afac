"""The remediation lock: one holder at a time among real contending processes, stale leases taken over, owners only release."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._remediation_lock import (
    LockError, RemediationLock, host_identity, parse_since, validate)
from ansible_collections.sre.runbooks.plugins.modules import remediation_lock as module

from ..modules.utils import run_module


def _contend(directory: str, owner: str, rounds: int, journal: str) -> None:
    """A contender in its own process: take the lock, note entering and leaving the critical section, give it back."""
    lock = RemediationLock(directory, "race:target")
    for _round in range(rounds):
        lock.acquire(owner, wait=60, ttl=60, poll=0.005)
        with open(journal, "a", encoding="utf-8") as handle:
            handle.write(f"in {owner} {time.monotonic()}\n")
            handle.flush()
            time.sleep(0.005)
            handle.write(f"out {owner} {time.monotonic()}\n")
        lock.release(owner)


def test_contending_processes_hold_the_lock_one_at_a_time(tmp_path):
    journal = tmp_path / "journal"
    journal.touch()
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_contend, args=(str(tmp_path / "locks"), f"run-{n}", 5, str(journal))) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    lines = journal.read_text().split()
    events = [lines[i:i + 3] for i in range(0, len(lines), 3)]
    assert len(events) == 6 * 5 * 2
    inside = None
    for kind, owner, _stamp in events:  # strictly alternating in/out of the same owner: never two inside
        if kind == "in":
            assert inside is None, f"{owner} entered while {inside} held the lock"
            inside = owner
        else:
            assert inside == owner
            inside = None
    history = json.loads((tmp_path / "locks" / "race:target.history").read_text())
    assert len(history) == 20 and all(h["released_by"] == h["owner"] for h in history)  # kept short
    assert not (tmp_path / "locks" / "race:target.lock").exists()
    assert oct((tmp_path / "locks").stat().st_mode & 0o777) == "0o700"


def test_threads_exactly_one_wins_without_waiting(tmp_path):
    barrier = threading.Barrier(8)
    outcomes: dict[str, str] = {}

    def contender(n):
        barrier.wait()
        try:
            RemediationLock(str(tmp_path), "once").acquire(f"t{n}", wait=0, ttl=60)
            outcomes[f"t{n}"] = "held"
        except LockError as exc:
            outcomes[f"t{n}"] = str(exc)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [owner for owner, outcome in outcomes.items() if outcome == "held"]
    assert len(winners) == 1
    loser = next(outcome for outcome in outcomes.values() if outcome != "held")
    assert f"held by {winners[0]}" in loser and "gave up after waiting 0 s" in loser


def test_a_waiter_gets_the_lock_when_the_holder_releases_and_learns_it_acted(tmp_path):
    first = RemediationLock(str(tmp_path), "high_error_rate:release")
    first.acquire("incident-A run 1", wait=0, ttl=60, note="rolling back 1.4.0")
    since = time.time() - 1
    threading.Timer(0.3, lambda: first.release("incident-A run 1", note="rolled back 1.4.0 to 1.3.2")).start()
    result = RemediationLock(str(tmp_path), "high_error_rate:release").acquire("incident-A run 2", wait=10, ttl=60, since=since)
    assert result["acquired"] and result["changed"] and result["contended"]
    assert 0.2 <= result["waited"] < 5
    assert result["waited_for"]["owner"] == "incident-A run 1" and result["waited_for"]["note"] == "rolling back 1.4.0"
    assert result["previous"]["owner"] == "incident-A run 1" and result["previous"]["note"] == "rolled back 1.4.0 to 1.3.2"
    assert [o["owner"] for o in result["others"]] == ["incident-A run 1"]
    assert result["holder"]["owner"] == "incident-A run 2" and result["took_over"] is None


def test_others_are_only_those_that_let_go_after_since(tmp_path):
    lock = RemediationLock(str(tmp_path), "n")
    lock.acquire("early", wait=0, ttl=60)
    lock.release("early")
    since = time.time() + 0.01
    time.sleep(0.02)
    result = lock.acquire("late", wait=0, ttl=60, since=since)
    assert result["others"] == [] and result["contended"] is False and result["previous"]["owner"] == "early"


def test_timeout_names_the_holder_and_since_when(tmp_path):
    RemediationLock(str(tmp_path), "rotate:api").acquire("incident-B run 1", wait=0, ttl=600, pid=os.getpid())
    started = time.monotonic()
    with pytest.raises(LockError) as caught:
        RemediationLock(str(tmp_path), "rotate:api").acquire("incident-B run 2", wait=0.4, ttl=600)
    assert 0.35 <= time.monotonic() - started < 5
    message = str(caught.value)
    assert "held by incident-B run 1" in message and f"pid {os.getpid()}" in message and " since 20" in message
    assert "gave up after waiting" in message and caught.value.option == "wait"
    assert caught.value.details["holder"]["owner"] == "incident-B run 1"


def test_a_lease_that_ran_out_is_taken_over(tmp_path):
    clock = [1000.0]
    old = RemediationLock(str(tmp_path), "scale:backend", clock=lambda: clock[0])
    old.acquire("crashed run", wait=0, ttl=30)
    clock[0] += 31
    result = RemediationLock(str(tmp_path), "scale:backend", clock=lambda: clock[0]).acquire("next run", wait=0, ttl=30, since=999)
    assert result["acquired"] and result["contended"] and result["waited"] == 0
    assert result["took_over"]["owner"] == "crashed run" and "lease ran out" in result["took_over"]["reason"]
    assert result["others"][0]["released_by"].startswith("taken over by next run")
    with pytest.raises(LockError, match="held by next run"):
        old.release("crashed run")  # the crashed run, back, no longer owns it


def test_a_holder_whose_process_ended_is_taken_over_at_once(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    RemediationLock(str(tmp_path), "model:restore").acquire("killed run", wait=0, ttl=3600, pid=int(dead.stdout))
    result = RemediationLock(str(tmp_path), "model:restore").acquire("next run", wait=0, ttl=60)
    assert result["took_over"]["owner"] == "killed run" and "has ended" in result["took_over"]["reason"]


def test_a_live_process_elsewhere_is_not_judged_from_here(tmp_path):
    RemediationLock(str(tmp_path), "x").acquire("remote run", wait=0, ttl=3600, pid=999999)
    record = json.loads((tmp_path / "x.lock").read_text())
    record["host_id"] = "another-machine/1"
    (tmp_path / "x.lock").write_text(json.dumps(record))
    with pytest.raises(LockError, match="held by remote run"):
        RemediationLock(str(tmp_path), "x").acquire("local run", wait=0, ttl=60)
    assert host_identity() != "another-machine/1"


def test_release_only_by_its_owner_absent_is_unchanged_force_breaks(tmp_path):
    lock = RemediationLock(str(tmp_path), "pg_terminate:db")
    assert lock.release("anyone")["changed"] is False  # no directory content yet
    lock.acquire("owner-1", wait=0, ttl=60)
    with pytest.raises(LockError) as caught:
        lock.release("owner-2")
    assert caught.value.option == "owner" and "held by owner-1" in str(caught.value) and "not by owner-2" in str(caught.value)
    assert (tmp_path / "pg_terminate:db.lock").exists()
    forced = lock.release("operator", force=True)
    assert forced["changed"] and "forced" in forced["msg"] and forced["previous"]["released_by"] == "forced by operator"
    again = lock.release("owner-1")
    assert again["changed"] is False and again["msg"].endswith("is not held")


def test_same_owner_renews_without_a_change(tmp_path):
    clock = [500.0]
    lock = RemediationLock(str(tmp_path), "n", clock=lambda: clock[0])
    first = lock.acquire("me", wait=0, ttl=10)
    clock[0] += 5
    again = lock.acquire("me", wait=0, ttl=10)
    assert first["changed"] and not again["changed"] and again["acquired"]
    assert again["holder"]["acquired_at"] == first["holder"]["acquired_at"]
    assert json.loads((tmp_path / "n.lock").read_text())["expires_ts"] == 515.0


def test_check_mode_takes_nothing(tmp_path):
    target = tmp_path / "locks"
    result = RemediationLock(str(target), "n").acquire("me", wait=5, ttl=60, check_mode=True)
    assert result["changed"] and not result["acquired"] and "would create" in result["msg"] and not target.exists()
    RemediationLock(str(target), "n").acquire("other", wait=0, ttl=60)
    started = time.monotonic()
    result = RemediationLock(str(target), "n").acquire("me", wait=30, ttl=60, check_mode=True)
    assert time.monotonic() - started < 2  # no waiting in check mode
    assert "would wait up to 30 s for other" in result["msg"] and result["holder"]["owner"] == "other"
    result = RemediationLock(str(target), "n").release("other", check_mode=True)
    assert result["changed"] and json.loads((target / "n.lock").read_text())["owner"] == "other"


def test_unreadable_record_is_held_until_its_lease_by_mtime(tmp_path):
    (tmp_path / "n.lock").write_text("{not json")
    with pytest.raises(LockError, match="unknown"):
        RemediationLock(str(tmp_path), "n").acquire("me", wait=0, ttl=60)
    old = time.time() - 61
    os.utime(tmp_path / "n.lock", (old, old))  # older than the lease: stale
    assert RemediationLock(str(tmp_path), "n").acquire("me", wait=0, ttl=60)["took_over"]["owner"].startswith("unknown")


def test_a_symlinked_directory_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(LockError, match="not a directory"):
        RemediationLock(str(tmp_path / "link"), "n").acquire("me", wait=0, ttl=60)
    assert list((tmp_path / "real").iterdir()) == []


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", "a..b", "", ".hidden", "x" * 129, "sp ace", "new\nline", "-flag"])
def test_bad_names_are_refused(name):
    problem = validate({"name": name, "owner": "me"})
    assert problem and problem.startswith("name:")


@pytest.mark.parametrize("params, option", [
    ({"owner": ""}, "owner"), ({"owner": "a\x1bb"}, "owner"), ({"owner": "x" * 257}, "owner"),
    ({"wait": -1}, "wait"), ({"wait": float("nan")}, "wait"), ({"ttl": 0}, "ttl"), ({"ttl": 1e9}, "ttl"),
    ({"pid": 0}, "pid"), ({"note": "n" * 1001}, "note"),
])
def test_bad_options_name_the_option(params, option):
    problem = validate({"name": "ok:name", "owner": "me", **params})
    assert problem and problem.startswith(option + ":")


def test_since_parses_iso_and_epoch():
    assert parse_since("2026-11-23T18:00:00+00:00") == parse_since("2026-11-23T18:00:00Z") == parse_since("1795456800")
    assert parse_since(None) is None
    with pytest.raises(LockError, match="since"):
        parse_since("yesterday")


def test_module_acquire_release_and_wrong_owner(monkeypatch, tmp_path):
    args = {"name": "high_error_rate:release", "path": str(tmp_path / "l"), "owner": "run-1", "ttl": 60}
    result, failed = run_module(monkeypatch, module.main, args)
    assert not failed and result["changed"] and result["acquired"] and result["holder"]["owner"] == "run-1"
    result, failed = run_module(monkeypatch, module.main, {**args, "owner": "run-2", "wait": 0.2})
    assert failed and result["option"] == "wait" and "held by run-1" in result["msg"] and result["holder"]["owner"] == "run-1"
    result, failed = run_module(monkeypatch, module.main, {**args, "owner": "run-2", "state": "released"})
    assert failed and result["option"] == "owner"
    result, failed = run_module(monkeypatch, module.main, {**args, "state": "released", "note": "done"})
    assert not failed and result["changed"] and result["previous"]["note"] == "done"
    result, failed = run_module(monkeypatch, module.main, {**args, "name": "../escape"})
    assert failed and result["option"] == "name" and not (tmp_path / "escape.lock").exists()
