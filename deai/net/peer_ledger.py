"""A p2p peer's own ledger: what it sent and what it mixed each round, with the senders' signatures.

With no aggregator there is no round result to co-sign. Instead each peer keeps a signed, hash-chained
log in its run directory (``ledger.db``; the peer's roster key is the owner, the other peers' keys are
registered as parties). Each round it appends a ``gossip_round`` entry: the hashes of the model it
started from and ended with, the SHA-256 of the model body it sent its neighbours, and for every
neighbour's model it mixed, that neighbour's signed frame header, which names the body's SHA-256.
``deai ledger verify`` checks one peer's log (every header's signature against the sender's key);
``deai ledger cross-check`` reads several and proves *equivocation* (a peer that signed two different
models for one round) and a log that misstates what its own peer sent (:mod:`deai.verify.gossip_audit`).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

from deai.config import ConfigError
from deai.net.roster import Roster
from deai.verify.identity import Identity
from deai.verify.ledger import Head, Ledger, LedgerError, read_entries
from deai.verify.quorum import GOSSIP_ROUND

__all__ = ["GOSSIP_ROUND", "PeerLedger"]


class PeerLedger:
    """The writer of one peer's log; a resumed peer appends after the rounds it recorded."""

    def __init__(
        self, run_dir: Path, identity: Identity, roster: Roster, index: int, config_text: str
    ) -> None:
        self.identity, self.path = identity, Path(run_dir) / "ledger.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.recorded: set[int] = set()
        if self.path.exists():
            try:
                entries = read_entries(self.path)
            except LedgerError as err:
                raise ConfigError(f"the peer's ledger: {err}") from None
            first = entries[0] if entries else {}
            if (
                first.get("kind") != "task_created"
                or first["body"].get("owner_key") != identity.public_key.hex()
            ):
                raise ConfigError(
                    f"{self.path} is not this peer's ledger (another owner key or no task_created entry); "
                    "give this peer its own --state directory"
                )
            self.ledger = Ledger(self.path, first["task"])
            self.recorded = {int(e["round"]) for e in entries if e["kind"] == GOSSIP_ROUND}
            return
        self.ledger = Ledger(self.path, f"p2p-{index}-{secrets.token_hex(8)}")
        created = {
            "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
            "owner_key": identity.public_key.hex(),
            "topology": "p2p",
            "peer": index,
        }
        with self.ledger.transaction() as tx:
            tx.append("task_created", created, identity)
            for j, key in enumerate(roster.parties):
                if j != index:
                    tx.append("joined", {"public_key": key.hex(), "role": "party", "party": j}, identity)

    def record(
        self,
        round_: int,
        model_before: str,
        model_after: str,
        sent: str | None,
        received: dict[int, tuple[dict[str, Any], bytes]],
    ) -> None:
        """One round: the models' hashes, the sent body's SHA-256 (None: it sent nothing) and, per mixed
        neighbour, the header and signature of the frame its model came in. A replayed round is skipped."""
        if round_ in self.recorded:
            return
        body = {
            "model_before": model_before,
            "model_after": model_after,
            "sent": sent,
            "received": {
                str(j): {"header": header, "signature": sig.hex()}
                for j, (header, sig) in sorted(received.items())
            },
        }
        self.ledger.append(GOSSIP_ROUND, body, self.identity, round_)
        self.recorded.add(round_)

    def head(self) -> Head:
        return self.ledger.head(self.identity)

    def close(self) -> None:
        self.ledger.close()
