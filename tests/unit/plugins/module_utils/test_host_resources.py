"""/proc parsers, CPU arithmetic, TCP decoding and command-line redaction of host_resources."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from ansible_collections.sre.runbooks.plugins.module_utils._host_resources import (
    REDACTED,
    collect,
    cpu_percentages,
    decode_address,
    disk_usage,
    format_cmdline,
    parse_meminfo,
    parse_net_tcp,
    parse_pid_stat,
    parse_proc_stat,
    redact_argv,
    summarise_ports,
)

PROC_STAT = """cpu  100 0 50 800 40 5 5 0 0 0
cpu0 60 0 30 400 20 3 2 0 0 0
cpu1 40 0 20 400 20 2 3 0 0 0
intr 12345 0 0
ctxt 999
btime 1700000000
"""


def test_parse_proc_stat_cpu_lines_only():
    cpus = parse_proc_stat(PROC_STAT)
    assert set(cpus) == {"cpu", "cpu0", "cpu1"}
    assert cpus["cpu"] == {"user": 100, "nice": 0, "system": 50, "idle": 800, "iowait": 40, "irq": 5, "softirq": 5, "steal": 0}


def test_parse_proc_stat_old_kernel_with_fewer_fields():
    assert parse_proc_stat("cpu 1 2 3 4\n")["cpu"]["steal"] == 0


def test_cpu_percentages_between_samples():
    before = parse_proc_stat(PROC_STAT)["cpu"]
    after = dict(before, user=before["user"] + 60, system=before["system"] + 10, idle=before["idle"] + 20,
                 iowait=before["iowait"] + 5, steal=before["steal"] + 5)
    pct = cpu_percentages(before, after)
    # total delta 100 ticks: busy = 100 - idle 20 - iowait 5
    assert pct == {"busy": 75.0, "user": 60.0, "system": 10.0, "iowait": 5.0, "steal": 5.0}


def test_cpu_percentages_no_time_passed():
    sample = parse_proc_stat(PROC_STAT)["cpu"]
    assert cpu_percentages(sample, sample)["busy"] is None


def test_parse_pid_stat_with_spaces_and_parentheses_in_name():
    fields = ["S", "1", "42", "42", "0", "-1", "4194560", "100", "0", "0", "0",
              "250", "50", "0", "0", "20", "0", "3", "0", "12345", "104857600", "2560"]
    text = "4242 (my (weird) proc) " + " ".join(fields) + " 18446744073709551615 1 1 0 0\n"
    stat = parse_pid_stat(text)
    assert stat == {"pid": 4242, "name": "my (weird) proc", "state": "S", "ppid": 1, "cpu_ticks": 300, "threads": 3,
                    "start_ticks": 12345, "rss_pages": 2560}


def test_parse_pid_stat_of_this_process():
    with open(f"/proc/{os.getpid()}/stat", encoding="utf-8") as handle:
        stat = parse_pid_stat(handle.read())
    assert stat["pid"] == os.getpid() and stat["ppid"] == os.getppid()
    assert stat["rss_pages"] > 0 and stat["threads"] >= 1


def test_parse_meminfo_converts_kb():
    info = parse_meminfo("MemTotal:       16000 kB\nMemAvailable:    1600 kB\nHugePages_Total:       4\n")
    assert info == {"MemTotal": 16000 * 1024, "MemAvailable": 1600 * 1024, "HugePages_Total": 4}


@pytest.mark.parametrize("hex_address, expected", [
    ("0100007F:1F90", ("127.0.0.1", 8080)),
    ("00000000:0016", ("0.0.0.0", 22)),
    ("0500000A:E4B6", ("10.0.0.5", 58550)),
    ("00000000000000000000000001000000:1538", ("::1", 5432)),
    ("0000000000000000FFFF00000100007F:18EB", ("127.0.0.1", 6379)),  # IPv4-mapped
    ("B80D0120000000000000000001000000:01BB", ("2001:db8::1", 443)),
])
def test_decode_address(hex_address, expected):
    assert decode_address(hex_address) == expected


NET_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 1001 1 0 100 0 0 10 0
   1: 0100007F:1538 0500000A:E4B6 01 00000000:00000000 00:00000000 00000000   106        0 1002 1 0 20 4 30 10 -1
   2: 0100007F:1538 0500000A:E4B7 01 00000000:00000000 00:00000000 00000000   106        0 1003 1 0 20 4 30 10 -1
   3: 0100007F:1538 0600000A:E4B8 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0
   4: 0100007F:D000 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1000        0 1004 1 0 20 4 30 10 -1
"""


def test_parse_net_tcp_and_summarise_ports():
    sockets = parse_net_tcp(NET_TCP)
    assert len(sockets) == 5
    assert sockets[0] == {"local": "127.0.0.1", "local_port": 5432, "remote": "0.0.0.0", "remote_port": 0,
                          "state": "LISTEN", "inode": 1001}
    summary = summarise_ports(sockets, [5432, 9999], top=1)
    pg = summary[0]
    assert pg["listening"] is True
    assert pg["inbound"] == {"total": 3, "established": 2, "states": {"ESTABLISHED": 2, "TIME_WAIT": 1},
                             "top_remote": [{"address": "10.0.0.5", "count": 2}]}
    assert pg["outbound"] == {"total": 1, "established": 1, "states": {"ESTABLISHED": 1}}
    assert summary[1]["listening"] is False and summary[1]["inbound"]["total"] == 0


@pytest.mark.parametrize("argv, expected", [
    (["psql", "--password", "hunter2", "-d", "db"], ["psql", "--password", REDACTED, "-d", "db"]),
    (["app", "--db-password=hunter2"], ["app", "--db-password=" + REDACTED]),
    (["app", "password=hunter2"], ["app", "password=" + REDACTED]),
    (["app", "--api-key", "abc123"], ["app", "--api-key", REDACTED]),
    (["worker", "--token=t0k3n", "--port", "80"], ["worker", "--token=" + REDACTED, "--port", "80"]),
    (["app", "SECRET_KEY=s3cr3t"], ["app", "SECRET_KEY=" + REDACTED]),
    (["celery", "-b", "redis://:pa55@127.0.0.1:6379/0"], ["celery", "-b", f"redis://:{REDACTED}@127.0.0.1:6379/0"]),
    (["app", "postgresql://scheduler:pa55@db/residency"], ["app", f"postgresql://scheduler:{REDACTED}@db/residency"]),
    (["curl", "-H", "Authorization: Bearer abc.def"], ["curl", "-H", "Authorization: " + REDACTED]),
    (["sh", "-c", "PGPASSWORD=x1 psql -h db"], ["sh", "-c", f"PGPASSWORD={REDACTED} psql -h db"]),
    (["sh", "-c", "curl -H 'X: y' --oauth2-bearer zz"], ["sh", "-c", f"curl -H 'X: y' --oauth2-bearer {REDACTED}"]),
    (["uvicorn", "app.main:app", "--port", "8000"], ["uvicorn", "app.main:app", "--port", "8000"]),
])
def test_redact_argv(argv, expected):
    assert redact_argv(argv) == expected


def test_redact_bearer_inside_one_argument():
    assert "abc.def" not in " ".join(redact_argv(["sh", "-c", "curl -H 'Authorization: Bearer abc.def' http://x"]))


def test_format_cmdline_redacts_then_truncates():
    raw = b"python\0-m\0worker\0--password\0hunter2\0" + b"x" * 300 + b"\0"
    text = format_cmdline(raw, 40)
    assert text.startswith(f"python -m worker --password {REDACTED}")
    assert len(text) == 40 and text.endswith("…")
    assert "hunter2" not in format_cmdline(raw, 1000)


def test_disk_usage_like_df():
    fake = SimpleNamespace(f_blocks=1000, f_frsize=4096, f_bfree=300, f_bavail=250, f_files=100, f_ffree=40)
    usage = disk_usage("/data", statvfs=lambda path: fake)
    assert usage["total_bytes"] == 4096000 and usage["used_bytes"] == 700 * 4096
    assert usage["used_percent"] == round(100 * 700 / 950, 1)
    assert usage["inodes_used_percent"] == 60.0


def test_disk_usage_missing_path_is_reported():
    assert disk_usage("/does/not/exist")["error"]


def _fake_proc(root, pids):
    (root / "net").mkdir(exist_ok=True)
    (root / "sys" / "fs").mkdir(parents=True, exist_ok=True)
    (root / "sys" / "fs" / "file-nr").write_text("512 0 9999\n")
    (root / "loadavg").write_text("3.00 2.00 1.00 3/200 4242\n")
    (root / "meminfo").write_text("MemTotal: 1000 kB\nMemAvailable: 50 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
    (root / "net" / "tcp").write_text(NET_TCP)
    for pid, (name, ticks, rss_pages, start) in pids.items():
        directory = root / str(pid)
        (directory / "fd").mkdir(parents=True, exist_ok=True)
        fields = ["R", "1", "0", "0", "0", "0", "0", "0", "0", "0", "0", str(ticks), "0", "0", "0", "20", "0", "1", "0",
                  str(start), "0", str(rss_pages)]
        (directory / "stat").write_text(f"{pid} ({name}) " + " ".join(fields) + "\n")
        (directory / "cmdline").write_bytes(f"{name}\0--token\0sekrit\0".encode())
        (directory / "status").write_text("Name: x\nUid:\t0\t0\t0\t0\n")


def test_collect_on_a_fake_proc(tmp_path):
    """Two samples of a fake /proc: CPU deltas, a leak suspect, a reused pid, findings."""
    page = os.sysconf("SC_PAGE_SIZE")
    ticks = os.sysconf("SC_CLK_TCK")
    grow_pages = (16 * 1024 * 1024) // page
    _fake_proc(tmp_path, {10: ("burner", 0, 100, 1), 11: ("leaker", 0, 1000, 1), 12: ("reused", 0, 10, 1)})
    (tmp_path / "stat").write_text("cpu 0 0 0 100 0 0 0 0\ncpu0 0 0 0 100 0 0 0 0\n")

    def second_sample(_seconds):
        _fake_proc(tmp_path, {10: ("burner", ticks, 100, 1), 11: ("leaker", 0, 1000 + grow_pages, 1),
                              12: ("reused", 5, 10, 99)})
        (tmp_path / "stat").write_text("cpu 90 0 0 110 0 0 0 0\ncpu0 90 0 0 110 0 0 0 0\n")

    result = collect({"interval": 1, "ports": [5432], "top": 3}, proc_root=str(tmp_path), sleep=second_sample)
    assert result["cpu"]["busy"] == 90.0 and result["cpu"]["cores"] == 1
    assert result["top_cpu"][0]["name"] == "burner"
    assert result["top_cpu"][0]["cpu_percent"] > 50  # 1 s of CPU in about 1 s
    assert result["top_cpu"][0]["cmdline"] == f"burner --token {REDACTED}"
    assert result["top_cpu"][0]["user"] == "root" and result["top_cpu"][0]["fds"] == 0
    reused = next(row for row in result["top_cpu"] if row["name"] == "reused")
    assert reused["new"] is True and reused["rss_growth_bytes"] is None
    assert [row["name"] for row in result["leak_suspects"]] == ["leaker"]
    assert result["leak_suspects"][0]["rss_growth_bytes"] == grow_pages * page
    assert result["memory"]["available_percent"] == 5.0
    assert result["load"]["per_core_5m"] == 2.0
    assert result["file_descriptors"] == {"allocated": 512, "max": 9999}
    assert result["connections"][0]["inbound"]["established"] == 2
    text = " ".join(result["findings"])
    assert "CPU 90.0% busy" in text and "only 5.0% of memory available" in text and "leaker" in text


@pytest.mark.parametrize("options, message", [
    ({"interval": 0}, "interval: must be more than 0"),
    ({"interval": 301}, "interval: must be more than 0 and at most 300"),
    ({"top": 0}, "top: must be between 1 and 1000"),
    ({"paths": ["relative/dir"]}, "paths: 'relative/dir' is not an absolute path"),
    ({"ports": [0]}, "ports: 0 is not a TCP port"),
    ({"leak_growth_bytes": 0}, "leak_growth_bytes: must be greater than 0"),
    ({"leak_growth_percent": -1}, "leak_growth_percent: must be greater than 0"),
    ({"cmdline_length": 3}, "cmdline_length: must be at least 10"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        collect(options, sleep=lambda seconds: None)
