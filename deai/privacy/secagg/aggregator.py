"""Secure aggregation behind deai's aggregator contract: a weighted mean the server never sees per party.

Weights are public example counts, so each party scales its own update by its public weight
p_u = w_u / sum(w) before masking; the server obtains sum_u p_u x_u under SecAgg+ (Bonawitz et
al. 2017; Bell et al. 2020) and divides by the survivors' total weight. This is FedAvg's mean
(McMahan et al. 2017) with per-coordinate clipping to ``[-clip, clip]`` applied by every party.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import AggregationContext, normalized_weights
from deai.privacy.secagg.protocol import SecAggResult, secure_sum
from deai.rng import Purpose, key, party_uniform

# Mid-protocol dropouts draw from key(seed, round, DROPOUT, extra=1): apart from the engine's
# participation dropouts (extra=0), which happen before a party trains.
_MID_PROTOCOL_DROPOUT_EXTRA = 1


class SecureAggregator:
    """Weighted mean of updates computed with :func:`secure_sum`.

    Parameters
    ----------
    clip : per-coordinate clipping range of an update (before weighting); values outside are
        clipped, so choose it from the updates' scale (e.g. the norm bound of a ClipByNorm).
    seed : public seed of the communication graph (combined with the round number).
    threshold_fraction, neighbours, modulus_bits : see :func:`secure_sum`.
    dropout_after_masking : probability that a party drops mid-protocol: it shared its keys (its
        neighbours mask against it), but its masked input never arrives. The protocol recovers
        its pairwise masks and the mean covers the survivors only; a round where too few survive
        raises :class:`~deai.privacy.secagg.errors.SecAggError`, as the protocol refuses. Drawn per
        party from ``(seed, round, party id)``, so who drops does not depend on who else takes part.

    After each call, ``last_result`` holds the protocol's :class:`SecAggResult` and
    ``ctx.signals["secagg_survivor"]`` marks whose updates the mean contains.
    """

    name = "secagg"
    weights_parties = True  # each party's share of the aggregate is its weight
    private = True  # sums masked inputs: no one sees an individual update
    min_parties = 2  # one update alone would be its own sum: nothing left to hide it among

    def __init__(
        self,
        *,
        clip: float,
        seed: int = 0,
        threshold_fraction: float = 0.5,
        neighbours: int | None = None,
        modulus_bits: int = 32,
        dropout_after_masking: float = 0.0,
    ) -> None:
        if not (np.isfinite(clip) and clip > 0):
            raise ValueError(f"clip must be a positive finite number; got {clip}")
        if not 0.0 <= dropout_after_masking < 1.0:
            raise ValueError(f"dropout_after_masking must be in [0, 1); got {dropout_after_masking}")
        self.clip = float(clip)
        self.seed = seed
        self.threshold_fraction = threshold_fraction
        self.neighbours = neighbours
        self.modulus_bits = modulus_bits
        self.dropout_after_masking = float(dropout_after_masking)
        self.last_result: SecAggResult | None = None

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: AggregationContext) -> np.ndarray:
        p = normalized_weights(weights)
        scaled = np.clip(np.asarray(updates, dtype=np.float64), -self.clip, self.clip) * p[:, None]
        dropped = None
        if self.dropout_after_masking > 0:
            stream = key(self.seed, ctx.round, Purpose.DROPOUT, extra=_MID_PROTOCOL_DROPOUT_EXTRA)
            dropped = party_uniform(stream, ctx.party_ids, 1)[:, 0] < self.dropout_after_masking
        result = secure_sum(
            scaled,
            seed=self.seed,
            round=ctx.round,
            clip=self.clip * float(p.max()),
            threshold_fraction=self.threshold_fraction,
            neighbours=self.neighbours,
            modulus_bits=self.modulus_bits,
            dropout_after_masking=dropped,
        )
        self.last_result = result
        survivor = np.zeros(len(p), dtype=bool)
        survivor[result.survivors] = True
        ctx.signals["secagg_survivor"] = survivor
        return (result.sum.astype(np.float64) / p[survivor].sum()).astype(np.float32)
