"""Reputation-weighted mean: parties earn weight by agreeing with the robust consensus over many rounds.

Each round scores party ``i`` by ``s_i = ReLU(cos(x_i, median))``, the cosine to the coordinate-wise median
of the round's updates (Yin et al. 2018, the robust reference), and folds it into a persistent reputation
``r_i <- gamma r_i + (1 - gamma) s_i``. The aggregate weights updates by ``r_i n_i``. A party that keeps
sending sign-flipped or unrelated updates decays towards 0; one odd round costs an honest party only
``1 - gamma`` of its standing. No single paper defines this rule: it is the exponential-moving-average
form of the reputation mechanisms of reputation-based FL (Kang et al. 2019, "Incentive Mechanism for
Reliable Federated Learning", IEEE IoT Journal, use subjective logic for the same purpose).
"""

from __future__ import annotations

import logging

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import (
    check_party_ids,
    check_round,
    combine,
    reduce_sorted_columns,
    row_dots,
    row_sq_norms,
    sorted_median,
)
from deai.checks import check_count, check_fraction

log = logging.getLogger(__name__)


class ReputationWeightedMean:
    """Mean weighted by ``reputation * example count``, the reputations persisting across rounds.

    Parameters
    ----------
    num_parties : total number of parties in the federation; ``ctx.party_ids`` index ``[0, num_parties)``.
    decay : ``gamma`` in ``[0, 1)``: the weight of past reputation in each update (0 = this round only).
    initial_reputation : a new party's reputation in ``[0, 1]``. The default 0.5 neither trusts nor distrusts
        newcomers: higher rewards fresh identities (whitewashing), lower starves honest newcomers.

    The round's score enters before weighting, so a bad update is penalized in the round it is sent.
    If every weight is 0 the result is the zero update, logged as a warning. ``ctx.signals["reputation"]``
    holds the participants' updated reputations, ``ctx.signals["reputation_weight"]`` their shares of the
    aggregate. State (``state()``/``load()``): ``{"reputation": [num_parties] float64}``.
    """

    name = "reputation"

    def __init__(self, *, num_parties: int, decay: float = 0.9, initial_reputation: float = 0.5) -> None:
        self.num_parties = check_count("num_parties", num_parties, 1)
        self.decay = check_fraction("decay", decay, upper=1.0, closed=False)
        initial = check_fraction("initial_reputation", initial_reputation, upper=1.0, closed=True)
        self._reputation = np.full(self.num_parties, initial)

    def state(self) -> dict[str, np.ndarray]:
        """``{"reputation": [num_parties] float64}``."""
        return {"reputation": self._reputation.copy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        reputation = np.asarray(state["reputation"], dtype=np.float64)
        if reputation.shape != (self.num_parties,) or not ((reputation >= 0) & (reputation <= 1)).all():
            raise ValueError(
                f"state['reputation'] must be [num_parties={self.num_parties}] values in [0, 1]; "
                f"got shape {reputation.shape}"
            )
        self._reputation = reputation.copy()

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, w = check_round(updates, weights)
        n, dim = u.shape
        ids = check_party_ids(ctx, n, self.num_parties)
        median = reduce_sorted_columns(u, sorted_median, ctx=ctx)
        norms = np.sqrt(row_sq_norms(u, ctx))
        median_norm = float(np.sqrt(row_sq_norms(median[None])[0]))
        denom = norms * median_norm
        cos = np.divide(row_dots(u, median), denom, out=np.zeros(n), where=denom > 0)
        score = np.maximum(cos, 0.0)
        reputation = self.decay * self._reputation[ids] + (1.0 - self.decay) * score
        self._reputation[ids] = reputation
        ctx.signals["reputation"] = reputation
        raw = reputation * w
        total = raw.sum()
        if total <= 0:
            ctx.signals["reputation_weight"] = np.zeros(n)
            log.warning(
                "reputation round %d: every party's weight is 0; returning the zero update", ctx.round
            )
            return np.zeros(dim, dtype=np.float32)
        share = raw / total
        ctx.signals["reputation_weight"] = share
        return combine(share, u)
