"""Alertmanager webhook receiver for the lab: stands in for Slack, PagerDuty and email.

    lab-alert-webhook --listen 127.0.0.1:19094 --log /var/log/alertmanager-webhook/notifications.jsonl

POST /alerts/<receiver>  Alertmanager's webhook payload; appended as one JSON line
                         {"received_at", "receiver", "status", "alerts": [{labels, status, startsAt}], ...}
GET  /notifications      the last 200 notifications (JSON list, newest last)
GET  /health             {"status": "healthy", "notifications": N}

Runs with the host's /usr/bin/python3, standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import deque
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECENT: deque = deque(maxlen=200)
LOCK = threading.Lock()
COUNT = [0]


class Handler(BaseHTTPRequestHandler):
    log_path = ""

    def _reply(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802  (http.server's naming)
        if self.path == "/health":
            self._reply(200, {"status": "healthy", "notifications": COUNT[0]})
        elif self.path == "/notifications":
            with LOCK:
                self._reply(200, list(RECENT))
        else:
            self._reply(404, {"detail": "not found"})

    def do_POST(self):  # noqa: N802
        if not self.path.startswith("/alerts/"):
            self._reply(404, {"detail": "not found"})
            return
        try:
            payload = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        except ValueError:
            self._reply(400, {"detail": "body is not JSON"})
            return
        record = {
            "received_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "receiver": self.path.split("/", 2)[2],
            "status": payload.get("status"),
            "group_labels": payload.get("groupLabels", {}),
            "alerts": [{"labels": a.get("labels", {}), "status": a.get("status"), "startsAt": a.get("startsAt")}
                       for a in payload.get("alerts", [])],
        }
        with LOCK:
            RECENT.append(record)
            COUNT[0] += 1
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        names = sorted({a["labels"].get("alertname", "?") for a in record["alerts"]})
        print(f"notification to {record['receiver']}: {record['status']} {', '.join(names)}", flush=True)
        self._reply(200, {"ok": True})

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass  # the journal gets one line per notification, not one per request


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lab-alert-webhook", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:19094")
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    Handler.log_path = args.log
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"listening on {args.listen}, notifications to {args.log}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
