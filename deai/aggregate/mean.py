"""Weighted mean of updates: FedAvg's aggregation (McMahan et al. 2017)."""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext, normalized_weights


class WeightedMean:
    """``sum_i p_i * update_i`` with ``p_i`` proportional to each party's example count."""

    name = "mean"
    weights_parties = True  # each party's share of the aggregate is its weight
    streaming = True  # a weighted sum: the server can fold a round batch by batch (deai.server.streaming)

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        p = normalized_weights(weights).astype(np.float32)
        return p @ updates
