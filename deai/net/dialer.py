"""A node that dials its parent (a party, an edge's upward side, a validator): session, redial, replica.

It opens a stream, says hello (with how many ledger entries its replica holds), and answers frames until
told to stop; a lost parent is redialed for ``network.reconnect_s``. Every dialing node keeps its replica
of the task's ledger in ``STATE/ledger.db`` (:mod:`deai.verify.replica`) and, once the task ends, the
signed head in ``STATE/summary.json``, so ``deai ledger verify STATE`` checks it against the head.
What a node does with its other frames is its subclass's :meth:`handle`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deai import jsonio
from deai.config import ConfigError, ExperimentConfig
from deai.net.codec import WireError, decode, encode
from deai.net.envelope import Envelope
from deai.net.events import EventLog
from deai.net.payloads import HELLO, LEDGER, STOP, WELCOME
from deai.net.star import Disconnected, StarLink
from deai.report.artifacts import atomic_write
from deai.verify.ledger import LedgerError
from deai.verify.replica import LedgerReplica, ReplicaRefused

REPLICA_FILE = "ledger.db"
SUMMARY_FILE = "summary.json"


def open_replica(cfg: ExperimentConfig, state_dir: Path) -> LedgerReplica | None:
    """The node's ledger replica (None when the task keeps no ledger); a damaged one is a ConfigError."""
    if not cfg.ledger.enabled:
        return None
    config_sha256 = hashlib.sha256(cfg.to_toml().encode()).hexdigest()
    try:
        return LedgerReplica(Path(state_dir) / REPLICA_FILE, config_sha256)
    except LedgerError as err:
        raise ConfigError(str(err)) from None


class DialingNode:
    role = "node"

    def __init__(
        self,
        cfg: ExperimentConfig,
        connect: Callable[[], StarLink],
        state_dir: Path,
        log: EventLog,
        *,
        on_ledger: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> None:
        self.cfg, self.connect, self.log = cfg, connect, log
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.link: StarLink | None = None
        self.status: dict[str, Any] = {"role": self.role, "round": 0, "peers": 0}
        self.sent = self.received = 0
        self.replica = open_replica(cfg, self.state_dir)
        self.on_ledger = on_ledger  # an edge passes new entries on to its own children

    def hello_fields(self) -> dict[str, Any]:
        return {}

    def hello_round(self) -> int:
        return 0

    def handle(self, link: StarLink, env: Envelope) -> bool:
        """Answer one frame of the node's own kinds; False for a kind it does not know."""
        return False

    # -- the session -------------------------------------------------------------------------
    def run(self) -> int:
        """Serve the task until the parent says stop (0) or stays unreachable (1)."""
        lost_since: float | None = None
        try:
            while True:
                try:
                    self.link = self.connect()
                    entries = 0 if self.replica is None else len(self.replica)
                    hello = encode(self.hello_fields() | {"ledger_entries": entries})
                    self.link.send(HELLO, self.hello_round(), hello)
                    if self._serve(self.link):
                        return 0
                except Disconnected:
                    pass
                finally:
                    self._close_link()
                self.status["peers"] = 0
                now = time.monotonic()
                lost_since = lost_since or now
                if now - lost_since > self.cfg.network.reconnect_s:
                    self.log("gave_up", seconds=round(now - lost_since, 1))
                    return 1
                self.log("redial", after_s=round(now - lost_since, 1))
                time.sleep(1.0)
        finally:
            self._close_link()
            if self.replica is not None:
                self.replica.close()

    def _close_link(self) -> None:
        if self.link is not None:
            self.sent += self.link.traffic.sent
            self.received += self.link.traffic.received
            self.link.close()
            self.link = None

    def _serve(self, link: StarLink) -> bool:
        """Answer frames until stop (True); ``Disconnected`` when the stream ends."""
        while True:
            env = link.receive(timeout=1.0)
            if env is None:
                continue
            if env.kind == WELCOME:
                self.status["peers"] = 1
                self.log("welcomed", round=env.round)
            elif env.kind == LEDGER:
                self._ledger(env)
            elif env.kind == STOP:
                self.log("stopped", round=env.round)
                return True
            elif not self.handle(link, env):
                self.log("refused", reason="unknown_kind", detail=env.kind)

    def _ledger(self, env: Envelope) -> None:
        if self.replica is None:
            self.log("refused", reason="ledger", detail="this task keeps no ledger (ledger.enabled = false)")
            return
        try:
            fields = decode(env.body)[0]
            new = self.replica.extend(fields.get("rows") or [])
        except (WireError, ReplicaRefused, AttributeError) as err:
            self.log("refused", reason="ledger", detail=str(err))
            return
        head = fields.get("head")
        self.status["ledger_entries"] = len(self.replica)
        if new:
            self.log("ledger", entries=len(self.replica), new=new)
        if isinstance(head, dict):
            atomic_write(self.state_dir / SUMMARY_FILE, jsonio.dumps({"ledger": head}, indent=2))
            self.log("ledger_head", entries=head.get("entries"), hash=head.get("hash"))
        if self.on_ledger is not None:
            self.on_ledger(head if isinstance(head, dict) else None)

    def traffic(self) -> dict[str, int]:
        link = self.link
        return {
            "bytes_sent": self.sent + (link.traffic.sent if link else 0),
            "bytes_received": self.received + (link.traffic.received if link else 0),
            "refused": link.traffic.refused if link else 0,
        }
