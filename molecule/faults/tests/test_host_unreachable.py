"""A host lost in the middle of a run, and SSH dropping under a run.

Host unreachable: app2's sshd stops and its open sessions (Ansible's persistent connection too) are cut once the
HighErrorRate triage has started on the app hosts. The run finishes, app1 is fully checked, app2 is listed as not
checked (with the connection error), and nothing is changed. app2 back, a rerun joins the incident and checks both.

SSH dropping: ml1's SSH sessions are cut every half second (eight times at most) while the Initial Assessment works on it (sshd keeps
listening, as when a flapping link or an sshd restart drops connections). The run finishes, and what it could not read
on ml1 is listed as not checked rather than guessed; a rerun checks everything."""

from __future__ import annotations

import time

from conftest import in_host, ssh_refused, unchecked_text


def test_host_unreachable_mid_run(runs):
    background = runs.start("high_error_rate.yml")
    background.wait_for_output("TASK [sre.runbooks.app_triage")
    with ssh_refused("app2"):
        run = background.wait()
    assert run.ok, run.output[-4000:]
    assert run.recap["app1"]["unreachable"] == 0 and run.recap["app1"]["failed"] == 0
    unchecked = run.record.get("unchecked") or []
    assert any(u.get("host") == "app2" for u in unchecked), unchecked
    assert not any(u.get("host") == "app1" for u in unchecked), unchecked
    assert "app2" in run.report.split("## Could not check")[1]
    assert not run.fleet_changed and run.actions == []

    rerun = runs.run("high_error_rate.yml")
    assert rerun.ok, rerun.output[-4000:]
    assert rerun.record["id"] == run.record["id"]
    assert rerun.record["unchecked"] == run.record["unchecked"]  # both hosts checked this time
    assert rerun.recap["app2"]["unreachable"] == 0


def cut_ssh_sessions(host: str) -> None:
    """Kill HOST's sshd session processes (not the listener): every open SSH connection drops."""
    in_host(host, "for pid in $(pgrep -f '^sshd: [^ ]*@'); do kill -9 $pid; done", check=False)


def test_ssh_dropping(runs):
    background = runs.start("initial_assessment.yml")
    background.wait_for_output("TASK [sre.runbooks.ml_triage")
    cuts = 0
    # Connections drop every half second while the run works on ml1 (a flapping link, sshd restarted by a deploy).
    while (cuts < 8 and "PLAY [Initial Assessment | critical metrics" not in background.text()
           and background.proc.poll() is None):
        cut_ssh_sessions("ml1")
        cuts += 1
        time.sleep(0.5)
    run = background.wait()
    assert cuts >= 1
    assert run.ok, run.output[-4000:]
    # (ignore_unreachable counts a dropped task as "ignored" in the recap, not "unreachable": read the task lines)
    lost = run.output.count("fatal: [ml1]: UNREACHABLE!")
    # What a dropped connection cost is named in the report, never silently missing.
    assert ("ml1" in unchecked_text(run)) == bool(lost), (lost, run.record.get("unchecked"))
    rerun = runs.run("initial_assessment.yml")
    assert rerun.ok and rerun.recap["ml1"]["unreachable"] == 0, rerun.output[-4000:]
    assert rerun.record["id"] == run.record["id"]
