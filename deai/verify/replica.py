"""A node's replica of the task's ledger: it stores only what extends the chain as ``verify`` would accept.

Every node of a networked task (party, validator, edge) keeps ``STATE/ledger.db``, the same SQLite
schema as the aggregator's run ledger, so ``deai ledger verify STATE`` works on any of them. The
aggregator sends the entries a node lacks (from the count the node gives in its hello), and after every
round the new ones. A replica re-runs every check of :func:`deai.verify.ledger.verify` on each entry it
is sent (hash, link, position, task, signature by a registered key, round order, co-signatures), on a
copy of its checker: a batch with one bad entry is refused whole, and nothing is written. It also refuses
a chain whose ``task_created`` names another config than the node's own, and a fork (an entry it holds
sent again with another hash). On open it re-checks what it holds, so a damaged file is named at once.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deai.verify.ledger import ChainChecker, LedgerError, _connect, _rows


class ReplicaRefused(ValueError):
    """Entries a replica will not store; ``reason`` says why (nothing of the batch was written)."""


class LedgerReplica:
    def __init__(self, path: Path, config_sha256: str | None = None) -> None:
        self.path, self.config_sha256 = Path(path), config_sha256
        self._db = _connect(self.path, create=True)
        self.checker = ChainChecker()
        self.head: str | None = None
        try:
            rows = list(
                _rows(
                    self._db.execute("SELECT seq, hash, entry, signature FROM entries ORDER BY seq"),
                    self.path,
                )
            )
        except LedgerError:
            self._db.close()
            raise
        for seq, *cols in rows:
            fault = self.checker.feed(seq, *cols)
            if fault is not None:
                self._db.close()
                raise LedgerError(
                    f"{self.path}: entry {fault[0]} of this node's ledger replica is bad ({fault[1]}); "
                    "move the file away and restart the node: the aggregator sends a node with no replica "
                    "the whole chain"
                )

    def __len__(self) -> int:
        return self.checker.count

    def extend(self, rows: Sequence[Sequence[Any]]) -> int:
        """Store ``rows`` (``[seq, hash, text, signature]``, in order) that extend the chain; return how
        many were new. ``ReplicaRefused`` (nothing stored) for a gap, a fork or any entry ``verify``
        would refuse."""
        trial = copy.deepcopy(self.checker)
        new = []
        for row in rows:
            try:
                seq, digest, text, signature = (int(row[0]), str(row[1]), str(row[2]), str(row[3]))
            except (TypeError, ValueError, IndexError):
                raise ReplicaRefused("a ledger row must be [seq, hash, text, signature]") from None
            if seq < trial.count:  # held already: it must be the same entry
                held = self._db.execute("SELECT hash FROM entries WHERE seq = ?", (seq,)).fetchone()
                if held is None or held[0] != digest:
                    raise ReplicaRefused(f"entry {seq} differs from the one this replica holds (a fork)")
                continue
            if seq > trial.count:
                raise ReplicaRefused(f"entry {seq} sent, but this replica holds {trial.count} (a gap)")
            fault = trial.feed(seq, digest, text, signature)
            if fault is not None:
                raise ReplicaRefused(f"entry {fault[0]}: {fault[1]}")
            if seq == 0 and self.config_sha256 is not None:
                body = json.loads(text).get("body", {})
                if body.get("config_sha256") != self.config_sha256:
                    raise ReplicaRefused("the ledger's task_created names another config than this node's")
            new.append((seq, digest, text, signature))
        if new:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", new)
        self.checker = trial
        return len(new)

    def settled_result(self) -> dict[str, Any] | None:
        """The body of the last round result held, if it stands: with validators, once more than 2/3 of
        them co-signed it; None when there is none or it has not (yet) reached its quorum."""
        checks = copy.deepcopy(self.checker.checks)
        opened = checks.open
        if opened is None or checks.close() is not None:
            return None
        return opened.body

    def close(self) -> None:
        self._db.close()
