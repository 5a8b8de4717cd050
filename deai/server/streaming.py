"""A synchronous round folded batch by batch, for rules whose aggregate is a weighted sum.

At a million parties the round's ``[P, dim]`` update matrix alone is gigabytes; a weighted mean needs
only ``sum_i w_i x_i`` and ``sum_i w_i``. Each arriving batch is validated and folded in, and dropped.
Rules that need every row at once (order statistics, Krum, secure aggregation, DP's clip-and-noise)
declare no ``streaming`` and the server keeps the rows as before.
"""

from __future__ import annotations

import numpy as np

from deai.messages import UpdateBatch
from deai.verify.validation import DUPLICATE_SENDER, validate_updates


class StreamingSum:
    """Running sums of one round: weighted update sum, accepted ids and weights, and metric sums."""

    def __init__(self, dim: int, num_parties: int, round_: int, max_norm: float | None) -> None:
        self.round, self.max_norm = round_, max_norm
        self.sum_wx = np.zeros(dim, dtype=np.float64)
        self.seen = np.zeros(num_parties, dtype=bool)
        self.reasons: dict[int, str] = {}  # party id -> reason
        self.accepted: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.rows = 0
        self.loss_w = self.w_all = self.raw_norm = 0.0
        self.loss_finite = True
        self.steps = 0
        self.batches = 0

    def fold(self, batch: UpdateBatch) -> None:
        check = validate_updates(
            batch.deltas, batch.party_ids, batch.round, self.round, max_norm=self.max_norm
        )
        keep = check.accepted
        again = keep & self.seen[batch.party_ids]  # answered in an earlier batch of this round
        keep &= ~again
        for i, why in check.reasons.items():
            self.reasons[int(batch.party_ids[i])] = why
        for pid in batch.party_ids[again]:
            self.reasons[int(pid)] = DUPLICATE_SENDER
        self.seen[batch.party_ids] = True
        w = batch.weights[keep]
        rows = batch.deltas if keep.all() else batch.deltas[keep]
        self.sum_wx += (w.astype(np.float32) @ rows).astype(np.float64)
        self.accepted.append(batch.party_ids[keep])
        self.weights.append(w)
        self.rows += len(batch)
        self.batches += 1
        loss = batch.metrics.get("train_loss")
        if loss is None or not np.isfinite(loss).all():
            self.loss_finite = False
        else:
            self.loss_w += float(np.dot(loss.astype(np.float64), batch.weights))
        self.w_all += float(batch.weights.sum())
        self.raw_norm += float(batch.metrics["raw_norm"].sum()) if "raw_norm" in batch.metrics else 0.0
        self.steps += int(batch.steps.sum())

    def accepted_ids(self) -> np.ndarray:
        return np.concatenate(self.accepted) if self.accepted else np.zeros(0, np.int64)

    def accepted_weights(self) -> np.ndarray:
        return np.concatenate(self.weights) if self.weights else np.zeros(0)

    def mean(self) -> np.ndarray:
        return (self.sum_wx / self.accepted_weights().sum()).astype(np.float32)
