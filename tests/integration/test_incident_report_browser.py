"""report.html in a real headless browser (Debian's chromium): the page renders the timeline and the chart.

Chromium takes a screenshot of the page (no network: every proxy points at a closed port, and the page has no
external reference); the PNG is decoded here and the drawn chart is checked by colour: the series line spans the
plot and rises above the dashed threshold line (#c62828), which runs across the plot at one height.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from datetime import datetime, timezone
from pathlib import Path

from ansible_collections.sre.runbooks.plugins.module_utils import _incident as inc
from tests.integration.conftest import free_port

SERIES = (0x15, 0x65, 0xC0)  # the series stroke, #1565c0
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1"]


def decode_png(data: bytes) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """(width, height, rows of RGB pixels) of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _compression, _filter, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append([tuple(line[x * channels:x * channels + 3]) for x in range(width)])
        previous = line
    return width, height, rows


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 30) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 11, 23, hour, minute, tzinfo=timezone.utc)


def reddish(pixel: tuple[int, int, int]) -> bool:
    return pixel[0] > 150 and pixel[0] - pixel[1] > 70 and pixel[0] - pixel[2] > 70


def make_incident(root: Path) -> Path:
    directory, _record, _joined, _changed = inc.open_or_join(
        root, "HighErrorRate", "4f2a9c1e", "critical", {"startsAt": "2026-11-23T09:00:00Z"}, "alert runbook › HighErrorRate",
        "HighErrorRate", "run1", True, False, now=at(9, 1))
    series = [[f"2026-11-23T08:{m:02d}:00Z", 0.01] for m in range(30, 60, 2)]
    series += [[f"2026-11-23T09:{m:02d}:00Z", v] for m, v in ((0, 0.18), (4, 0.31), (8, 0.29), (12, 0.12), (16, 0.02), (20, 0.01))]
    inc.update(directory, {
        "summary": "412 errors, 96 % OperationalError; deployment v2.1.0 correlates.",
        "actions": [{"time": "2026-11-23T09:10:00+00:00", "host": "app1", "action": "rolled back v2.1.0 to v2.0.9", "result": "changed"}],
        "metric": {"name": "error ratio (5xx / all requests)", "threshold": 0.05, "series": series},
        "documentation": {"root_cause": "Deployment v2.1.0 exhausted the connection pool"},
        "events": [{"event": "investigated", "detail": "pattern single; deployment correlated"}],
    }, False, now=at(9, 6))
    inc.append_task_log(directory, [{"kind": "task", "time": "2026-11-23T09:09:58+00:00", "host": "app1", "task": "Roll back",
                                     "status": "changed", "detail": "release v2.0.9 active"}])
    inc.update(directory, {"status": "resolved", "events": [{"event": "resolved", "detail": "recovery verified"}]}, False,
               now=at(9, 24))
    return directory


def test_report_page_draws_the_timeline_and_the_chart(tmp_path):
    directory = make_incident(tmp_path / "incidents")
    page = directory / "report.html"
    text = page.read_text()
    assert not re.search(r"(?:src|href)=|url\(|@import|<script", text), "the page must be self-contained"
    assert "Roll back" in text and "investigated" in text  # the timeline holds events and callback tasks

    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is required (requirements/debian.txt)"
    shot = tmp_path / "report.png"
    dead_proxy = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--proxy-server={dead_proxy}", "--window-size=1200,1100",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-3000:]

    width, height, rows = decode_png(shot.read_bytes())
    assert (width, height) == (1200, 1100)
    series = [(x, y) for y, row in enumerate(rows) for x, pixel in enumerate(row) if near(pixel, SERIES)]
    assert series, "no series line in the screenshot"
    xs = [x for x, _y in series]
    assert max(xs) - min(xs) > 400, "the series does not span the plot"
    # The threshold: the one row with a long run of its colour (badges are short, markers vertical).
    # Antialiasing blends its 1.5 px stroke with the background, so any clearly red pixel counts.
    threshold_rows = [y for y, row in enumerate(rows) if sum(reddish(p) for p in row) > 300]
    assert threshold_rows, "no threshold line"
    threshold_y = threshold_rows[0]
    assert max(threshold_rows) - threshold_y <= 2
    # The errors peak at six times the threshold and end under it: the line crosses it both ways.
    assert min(y for _x, y in series) < threshold_y - 50
    assert max(y for _x, y in series) > threshold_y + 5
    # Vertical markers (incident start, remediation, resolved) are drawn across the plot.
    marker_columns = [x for x in range(width) if sum(near(rows[y][x], (0xEF, 0x6C, 0x00)) for y in range(height)) > 100]
    assert marker_columns, "no remediation marker"
