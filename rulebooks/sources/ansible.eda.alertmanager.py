"""Stand-in for the ``ansible.eda.alertmanager`` event source, for machines without the ansible.eda collection.

The rulebook names ``ansible.eda.alertmanager``. Where that collection is installed (an execution or decision
environment built from execution-environment.yml, or any machine that reaches Ansible Galaxy) it is used as is.
Where it is not (this project's CI reaches PyPI only, and ansible.eda is not published there),
``ansible-rulebook -S rulebooks/sources`` loads this file instead: ansible-rulebook looks in the source directory
for ``<source name>.py`` before it looks in collections.

It accepts the same options and puts the same events on the queue (the ansible.eda documentation's contract):

- options ``host`` (default localhost), ``port`` (5000), ``data_alerts_path`` (``alerts``; empty: the whole payload
  is one alert), ``data_host_path`` (``labels.instance``; empty: no host), ``data_path_separator`` (``.``) and
  ``skip_original_data`` (false);
- ``POST /<endpoint>`` with Alertmanager's webhook payload puts, unless ``skip_original_data``,
  ``{"payload": ..., "meta": {"endpoint", "headers"}}`` and then one ``{"alert": ..., "meta": {"endpoint", "headers",
  "hosts"}}`` per alert (the host without its ``:port``) and answers 202; ``GET /`` answers 200 ``up``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web


def _lookup(data: Any, path: str, separator: str) -> Any:
    """The value at ``path`` (keys joined by ``separator``) in nested dicts; KeyError when a key is missing."""
    for key in path.split(separator):
        if not isinstance(data, dict) or key not in data:
            raise KeyError(path)
        data = data[key]
    return data


def alert_events(payload: Any, endpoint: str, headers: dict, options: dict) -> list[dict]:
    """The events one webhook delivery puts on the queue, in order."""
    events = []
    if not options["skip_original_data"]:
        events.append({"payload": payload, "meta": {"endpoint": endpoint, "headers": headers}})
    if options["data_alerts_path"]:
        try:
            alerts = _lookup(payload, options["data_alerts_path"], options["data_path_separator"])
        except KeyError:
            alerts = []
        if not isinstance(alerts, list):
            alerts = [alerts]
    else:
        alerts = [payload]
    for alert in alerts:
        hosts = []
        if options["data_host_path"]:
            try:
                host = _lookup(alert, options["data_host_path"], options["data_path_separator"])
            except KeyError:
                host = None
            if isinstance(host, str) and host:
                hosts.append(host.split(":", 1)[0])
        events.append({"alert": alert, "meta": {"endpoint": endpoint, "headers": headers, "hosts": hosts}})
    return events


def options_from(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "host": str(args.get("host", "localhost")),
        "port": int(args.get("port", 5000)),
        "data_alerts_path": str(args.get("data_alerts_path", "alerts")),
        "data_host_path": str(args.get("data_host_path", "labels.instance")),
        "data_path_separator": str(args.get("data_path_separator", ".")),
        "skip_original_data": bool(args.get("skip_original_data", False)),
    }


async def main(queue: asyncio.Queue, args: dict[str, Any]) -> None:
    """Serve the webhook until cancelled."""
    options = options_from(args)

    async def status(_request: web.Request) -> web.Response:
        return web.Response(status=200, text="up")

    async def receive(request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="body is not JSON")
        for event in alert_events(payload, request.match_info["endpoint"], dict(request.headers), options):
            await queue.put(event)
        return web.Response(status=202, text="Received")

    app = web.Application()
    app.add_routes([web.get("/", status), web.post("/{endpoint}", receive)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, options["host"], options["port"]).start()
    logging.getLogger(__name__).info("alertmanager source listening on %s:%s", options["host"], options["port"])
    try:
        await asyncio.Future()
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("alertmanager source stopped")
    finally:
        await runner.cleanup()


if __name__ == "__main__":

    class _PrintQueue(asyncio.Queue):
        async def put(self, item):
            print(json.dumps(item))

    asyncio.run(main(_PrintQueue(), {}))
