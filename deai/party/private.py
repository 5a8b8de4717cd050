"""The party side of a private sum: each party keeps its own update and answers the server's phases.

Under secure aggregation or HE a party sends the server its update's metadata (weight, steps, loss) but
not the update: the rows stay here, and the server's SecAgg+ stages (or HE encryption request) arrive as
messages that each party answers with its masked input (or ciphertext). Before holding a row, the party
checks it can be encoded at all (finite, within the float range); a row that cannot is not sent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deai.messages import UpdateBatch
from deai.privacy.dp.mechanisms import RingNoise
from deai.verify.validation import DIGESTIBLE_NORM, NON_FINITE, NORM_OVERFLOW, row_norms


class WithheldUpdates:
    """The round's updates of the parties a program holds, answered only through protocol messages."""

    def __init__(self, ring_noise: RingNoise | None = None) -> None:
        self.rows: dict[int, np.ndarray] = {}
        self.ring_noise = ring_noise  # distributed DP under SecAgg+: each party's own discrete noise share
        self._stages = None

    def hold(self, batch: UpdateBatch) -> tuple[UpdateBatch, dict[str, np.ndarray]]:
        """Keep ``batch``'s rows; return it without them, and the parties whose row cannot be encoded."""
        norms = row_norms(batch.deltas)
        finite = np.isfinite(norms)
        bad = {
            NON_FINITE: batch.party_ids[~finite],
            NORM_OVERFLOW: batch.party_ids[finite & (norms > DIGESTIBLE_NORM)],
        }
        usable = finite & (norms <= DIGESTIBLE_NORM)
        for i in np.flatnonzero(usable):
            self.rows[int(batch.party_ids[i])] = batch.deltas[i]
        kept = batch.take(usable)
        kept.deltas = np.zeros((len(kept), 0), dtype=np.float32)  # the rows stay with their parties
        return kept, {why: ids for why, ids in bad.items() if len(ids)}

    def clear(self) -> None:
        self.rows = {}

    def answer(self, kind: str, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        """Each addressed party's reply to one phase of the server's private sum."""
        from deai.privacy.he.aggregator import HE_ENCRYPT, encrypt_replies
        from deai.privacy.secagg.phases import START, PartyStages

        if kind == HE_ENCRYPT:
            return encrypt_replies(kind, messages, self.rows)
        if kind == START:
            self._stages = PartyStages(self.rows, self.ring_noise)
        return self._stages.answer(kind, messages)
