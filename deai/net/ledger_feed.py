"""Ledger replication down a star: each session is sent the ledger entries it lacks.

A node says in its hello how many entries its replica holds; on joining it is sent the rest, and after
every round the new ones (``publish``). The rows go as stored (``[seq, hash, text, signature]``): every
entry is signed by the key that made it, so the sender cannot alter one, only withhold it, and the
replica (:mod:`deai.verify.replica`) re-checks each. The source is a ledger file: the aggregator's run
ledger, or at an edge its own replica, so a tree replicates level by level.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deai.net.codec import WireError, decode, encode
from deai.net.envelope import Envelope
from deai.net.events import EventLog
from deai.net.payloads import LEDGER
from deai.verify.ledger import LedgerError, read_rows


def hello_entries(hello: Envelope) -> int:
    """The replica length a node's hello gives (0 when it gives none)."""
    try:
        return max(0, int(decode(hello.body)[0].get("ledger_entries", 0)))
    except (WireError, TypeError, ValueError):
        return 0


class LedgerFeed:
    def __init__(self, hub: Any, source: Callable[[], Path | None], log: EventLog) -> None:
        self.hub, self.source, self.log = hub, source, log
        self.sent: dict[int, int] = {}  # session index -> entries it holds (as far as we know)
        self._lock = threading.Lock()

    def on_join(self, index: int, hello: Envelope) -> None:
        with self._lock:
            self.sent[index] = hello_entries(hello)
        self.publish([index])

    def publish(
        self, indices: list[int] | None = None, head: dict[str, Any] | None = None, round_: int = 0
    ) -> None:
        """Send each session (default: all) what it lacks; ``head`` (the final signed head) goes too."""
        path = self.source()
        if path is None or not Path(path).is_file():
            return
        with self._lock:
            cache: dict[int, list] = {}
            for i in self.hub.members() if indices is None else indices:
                start = self.sent.get(i, 0)
                if start not in cache:
                    try:
                        cache[start] = read_rows(path, start)
                    except LedgerError as err:
                        self.log("ledger_unreadable", detail=str(err))
                        return
                rows = cache[start]
                if not rows and head is None:
                    continue
                if self.hub.send(i, LEDGER, round_, encode({"rows": rows, "head": head})):
                    self.sent[i] = start + len(rows)
