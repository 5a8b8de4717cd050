"""What the party program and the server program say to each other: a task out, columns of updates back.

Messages are columnar: an :class:`UpdateBatch` holds P rows (all of a round's parties in the simulator, one
on a node), so the simulator stays vectorized and a node sends a batch of one through the same code.
Per-row digests are computed only when something asks for them (a ledger, a signature).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deai.train import LocalSpec


def row_digests(rows: np.ndarray) -> list[bytes]:
    """SHA-256 of each row's bytes: the digest updates are committed, signed and checked by."""
    return [hashlib.sha256(row.tobytes()).digest() for row in np.ascontiguousarray(rows)]


@dataclass(frozen=True)
class TrainTask:
    """The server's request for one round of local training from the model ``params`` of ``version``."""

    round: int
    version: int
    params: np.ndarray  # float32 [dim]
    spec: LocalSpec
    seed: int
    party_ids: np.ndarray  # int64, the parties asked to train
    deadline: float | None = None  # simulated time a party may train before it must report
    straggler_policy: str = "drop"  # "partial": a slow party reports the steps it did by the deadline
    control: np.ndarray | None = None  # SCAFFOLD's server control variate c
    # secure aggregation or HE: parties keep their updates and answer the server's protocol phases
    withhold: bool = False


@dataclass
class UpdateBatch:
    """The updates of P parties, as columns; ``metrics`` holds per-party columns (train_loss, raw_norm…)."""

    party_ids: np.ndarray  # int64 [P]
    round: np.ndarray  # int64 [P] round each update answers
    base_version: np.ndarray  # int64 [P] model version each update was trained from
    deltas: np.ndarray  # float32 [P, dim] after the party's client transforms
    weights: np.ndarray  # float64 [P] example counts the party declares
    steps: np.ndarray  # int64 [P] local steps taken
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    control_deltas: np.ndarray | None = None  # float32 [P, dim] SCAFFOLD's c_i+ - c_i
    arrival: np.ndarray | None = None  # float64 [P] simulated arrival time after the round opened
    signatures: list[bytes] | None = None  # each row's party signature ([ledger] sign_updates)
    commits: list[Any] | None = None  # each row's signed commitment and salt ([ledger] commit_reveal)
    _digests: list[bytes] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.party_ids)

    def take(self, rows: np.ndarray) -> UpdateBatch:
        """The batch restricted to ``rows`` (a boolean mask or indices)."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        picked = np.arange(len(self))[rows].tolist()
        signatures = None if self.signatures is None else [self.signatures[i] for i in picked]
        commits = None if self.commits is None else [self.commits[i] for i in picked]
        digests = None if self._digests is None else [self._digests[i] for i in picked]

        return UpdateBatch(
            party_ids=self.party_ids[rows],
            round=self.round[rows],
            base_version=self.base_version[rows],
            deltas=self.deltas[rows],
            weights=self.weights[rows],
            steps=self.steps[rows],
            metrics={k: v[rows] for k, v in self.metrics.items()},
            control_deltas=pick(self.control_deltas),
            arrival=pick(self.arrival),
            signatures=signatures,
            commits=commits,
            _digests=digests,
        )

    def with_deltas(self, deltas: np.ndarray) -> UpdateBatch:
        """The same batch carrying other update rows (an adversary's crafted matrix); digests recomputed."""
        out = self.take(slice(None))
        out.deltas, out.signatures, out.commits, out._digests = deltas, None, None, None
        return out

    def digests(self) -> list[bytes]:
        """SHA-256 of each row's bytes, computed once on first use."""
        if self._digests is None:
            self._digests = row_digests(self.deltas)
        return self._digests

    def rehash(self) -> list[bytes]:
        """The receiver's own digests of the rows it holds, replacing any cached by the sender (a digest
        the sender computed proves nothing about the rows that arrived)."""
        self._digests = row_digests(self.deltas)
        return self._digests

    @staticmethod
    def concat(batches: list[UpdateBatch]) -> UpdateBatch:
        """One batch of all rows, in order; an empty list is refused (there is no dimension to give it)."""
        if not batches:
            raise ValueError("concat needs at least one batch")
        if len(batches) == 1:
            return batches[0]

        def cat(name: str) -> np.ndarray | None:
            parts = [getattr(b, name) for b in batches]
            return None if any(p is None for p in parts) else np.concatenate(parts)

        keys = set(batches[0].metrics).intersection(*(b.metrics for b in batches[1:]))
        return UpdateBatch(
            party_ids=cat("party_ids"),
            round=cat("round"),
            base_version=cat("base_version"),
            deltas=cat("deltas"),
            weights=cat("weights"),
            steps=cat("steps"),
            metrics={k: np.concatenate([b.metrics[k] for b in batches]) for k in sorted(keys)},
            control_deltas=cat("control_deltas"),
            arrival=cat("arrival"),
            signatures=None
            if any(b.signatures is None for b in batches)
            else [s for b in batches for s in b.signatures],
            commits=None
            if any(b.commits is None for b in batches)
            else [c for b in batches for c in b.commits],
        )


@dataclass(frozen=True)
class Failure:
    """Parties asked to train whose update will not come: ``reason`` is "dropout" or "deadline"."""

    party_ids: np.ndarray
    reason: str


@dataclass
class RoundRecord:
    """What the server released in one round; subscribers (ledger, dashboard, observer) read these.

    ``metrics`` is the round's metrics line. ``batch`` is the accepted batch, given to in-process
    subscribers only (valuation rebuilds coalition models from it); it is never written anywhere.
    """

    round: int
    version: int
    params: np.ndarray
    accepted: np.ndarray  # int64 party ids whose update entered the aggregate
    rejected: dict[int, str]  # party id -> reason
    weights: np.ndarray | None  # float64 [accepted] each accepted party's share of the aggregate, if any
    metrics: dict[str, Any]
    released: bool  # did the global model change?
    batch: UpdateBatch | None = None
    aggregate: np.ndarray | None = None  # the released update, in-process only
    asked: np.ndarray | None = None  # int64 party ids the round's task was sent to
    evidence: dict[int, dict[str, Any]] | None = None  # party -> proof of a broken commit-reveal
