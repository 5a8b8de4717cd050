"""A node's structured log: one strict-JSON object per line, to its log file and to stderr."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from deai import jsonio


class EventLog:
    def __init__(self, node: str, path: Path | None = None, echo: TextIO | None = sys.stderr) -> None:
        self.node, self.echo = node, echo
        self._file = None if path is None else open(path, "a", encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def __call__(self, event: str, **fields: Any) -> None:
        line = jsonio.dumps({"t": round(time.time(), 3), "node": self.node, "event": event, **fields})
        with self._lock:
            self.counts[event] = self.counts.get(event, 0) + 1
            for out in (self._file, self.echo):
                if out is not None:
                    out.write(line + "\n")
                    out.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
