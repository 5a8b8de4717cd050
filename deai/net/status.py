"""A node's local status endpoint: ``GET /status`` (strict JSON) and ``GET /metrics`` (Prometheus).

Both read one snapshot function of the node, so the two views never disagree. Bind it to loopback
(the default) unless a monitoring host must reach it: it shows no data, but it shows activity.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from deai import jsonio


class _SnapshotCollector:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for key, value in sorted(self.snapshot().items()):
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            yield GaugeMetricFamily(f"deai_node_{key}", f"deai node {key.replace('_', ' ')}", value=value)


class StatusServer:
    def __init__(self, listen: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--status {listen!r}: give HOST:PORT, e.g. 127.0.0.1:9100 (port 0: any free)")
        registry = CollectorRegistry()
        registry.register(_SnapshotCollector(snapshot))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/status":
                    body, kind = jsonio.dumps(snapshot()).encode(), "application/json"
                elif self.path == "/metrics":
                    body, kind = generate_latest(registry), "text/plain; version=0.0.4"
                else:
                    self.send_error(404, "try /status or /metrics")
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # the node's event log is the log
                pass

        self._http = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
        self._http.daemon_threads = True
        self.address = f"{host}:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
