"""FoolsGold (Fung, Yoon and Beschastnikh 2020, "The Limitations of Federated Learning in Sybil Settings",
RAID).

Sybils that push one poisoning objective send updates that point the same way round after round, while
honest parties with different data diverge. FoolsGold keeps each party's running sum of updates, measures
the pairwise cosine similarity of those histories, and down-weights parties whose history is too similar
to someone else's, "pardoning" honest parties that merely resemble a more suspicious one.
"""

from __future__ import annotations

import logging

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import (
    check_party_ids,
    check_round,
    combine,
    require_finite,
    row_sq_norms,
    sum_blocks,
    syrk,
)
from deai.checks import check_count, check_positive

log = logging.getLogger(__name__)


def foolsgold_weights(cosine: np.ndarray, confidence: float = 1.0) -> np.ndarray:
    """Per-party learning rates in ``[0, 1]`` from the history cosine-similarity matrix (Algorithm 1).

    Follows the authors' reference code: the diagonal counts as 0; pardoning scales ``cs_ij`` by
    ``v_i / v_j`` when party ``j``'s maximum similarity ``v_j`` exceeds ``v_i``; ``alpha_i = 1 - max_j cs_ij``
    clipped to ``[0, 1]``, divided by its maximum, 1 mapped to 0.99, then passed through the logit
    ``kappa (ln(alpha / (1 - alpha)) + 1/2)`` and clipped to ``[0, 1]`` again.
    """
    cs = cosine.copy()
    np.fill_diagonal(cs, 0.0)
    v = cs.max(axis=1)  # >= 0 because the diagonal is 0
    pardon = v[:, None] < v[None, :]
    cs[pardon] *= (v[:, None] / np.where(v > 0, v, 1.0)[None, :])[pardon]
    alpha = np.clip(1.0 - cs.max(axis=1), 0.0, 1.0)
    peak = alpha.max()
    if peak <= 0:
        return np.zeros_like(alpha)
    alpha = alpha / peak
    alpha[alpha == 1.0] = 0.99
    with np.errstate(divide="ignore"):  # alpha = 0 gives log(0) = -inf, clipped to weight 0
        alpha = confidence * (np.log(alpha / (1.0 - alpha)) + 0.5)
    return np.clip(alpha, 0.0, 1.0)


class FoolsGold:
    """Mean of the round's updates weighted by FoolsGold's per-party learning rates.

    Parameters
    ----------
    num_parties : total number of parties in the federation; ``ctx.party_ids`` index ``[0, num_parties)``.
    confidence : ``kappa`` of the logit, 1 in the paper.

    State: every party's summed past updates, a float32 ``[num_parties, dim]`` array allocated on the first
    round, i.e. ``4 * num_parties * dim`` bytes (4 GB for 1000 parties of a 1M-parameter model); it is what
    ``state()`` returns for checkpoints. Similarities are computed among the round's participants, from one
    Gram matrix of their histories. The aggregate is ``sum_i alpha_i x_i / sum_i alpha_i`` over the round's
    updates: FoolsGold's rates made a convex combination so the server optimizer sees a mean, and example
    counts are not used because Sybils report whatever counts they like. If every rate is 0 the result is
    the zero update, logged as a warning. ``ctx.signals["foolsgold_weight"]`` holds each party's share.
    """

    name = "foolsgold"

    def __init__(self, *, num_parties: int, confidence: float = 1.0) -> None:
        self.num_parties = check_count("num_parties", num_parties, 1)
        self.confidence = check_positive("confidence", confidence)
        self._history = np.zeros((self.num_parties, 0), dtype=np.float32)

    def state(self) -> dict[str, np.ndarray]:
        """``{"history": [num_parties, dim] float32}``; zero columns before the first round."""
        return {"history": self._history.copy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        history = np.asarray(state["history"], dtype=np.float32)
        if history.ndim != 2 or history.shape[0] != self.num_parties or not np.isfinite(history).all():
            raise ValueError(
                f"state['history'] must be a finite [num_parties={self.num_parties}, dim] array; "
                f"got shape {history.shape}"
            )
        self._history = np.array(history, order="C")

    def _accumulate_gram(self, ids: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Add the round's updates to the participants' histories; return the Gram matrix of those histories.

        One pass per column block does both, so each block of histories is multiplied while still in cache.
        Blocks touch disjoint columns, so they run in parallel safely.
        """
        first = int(ids[0])
        contiguous = np.array_equal(ids, np.arange(first, first + len(ids)))

        def block(start: int, stop: int) -> np.ndarray:
            if contiguous:  # a view: no gather/scatter copies
                rows = self._history[first : first + len(ids), start:stop]
                rows += u[:, start:stop]
            else:
                rows = self._history[ids, start:stop]
                rows += u[:, start:stop]
                self._history[ids, start:stop] = rows
            return syrk(rows)

        return sum_blocks(block, u.shape[1], blas=True)

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        n, dim = u.shape
        ids = check_party_ids(ctx, n, self.num_parties)
        if self._history.shape[1] == 0:
            self._history = np.zeros((self.num_parties, dim), dtype=np.float32)
        elif self._history.shape[1] != dim:
            raise ValueError(
                f"updates have dim {dim} but the stored histories have dim {self._history.shape[1]}"
            )
        row_sq_norms(u, ctx)  # reject non-finite rows before they poison the histories for good
        g = self._accumulate_gram(ids, u)
        require_finite(np.diag(g), u, ctx)  # a history can still overflow after many huge updates
        norms = np.sqrt(np.diag(g))
        denom = np.outer(norms, norms)
        cosine = np.divide(g, denom, out=np.zeros_like(g), where=denom > 0)
        alpha = foolsgold_weights(cosine, self.confidence)
        total = alpha.sum()
        if total <= 0:
            ctx.signals["foolsgold_weight"] = np.zeros(n)
            log.warning("foolsgold round %d: every party's weight is 0; returning the zero update", ctx.round)
            return np.zeros(dim, dtype=np.float32)
        share = alpha / total
        ctx.signals["foolsgold_weight"] = share
        return combine(share, u)
