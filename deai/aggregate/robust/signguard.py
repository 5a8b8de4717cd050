"""SignGuard (Xu, Huang, Song and Lan 2022, "Byzantine-robust Federated Learning through Collaborative
Malicious Gradient Filtering", ICDCS, Algorithm 1).

Two filters, whose intersection is trusted:
1. norm filter: an update whose norm is below ``lower`` or above ``upper`` times the round's median norm
   is dropped (scaled attacks, IPM, free riders sending almost nothing);
2. sign filter: on a random subset of coordinates, each update is described by the shares of its positive,
   zero and negative entries; Mean-Shift clusters these three numbers and only the largest cluster is
   kept. Attacks that shift many coordinates (ALIE, Gaussian noise, sign games) change these shares even
   when their norm looks honest.
The trusted updates are clipped to the median norm and averaged.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import check_round, clip_factors, combine, row_sq_norms
from deai.checks import check_fraction, check_positive
from deai.rng import Purpose, generator


def sign_statistics(updates: np.ndarray) -> np.ndarray:
    """``[n, 3]``: each row's shares of positive, zero and negative entries."""
    size = updates.shape[1]
    positive = (updates > 0).sum(axis=1)
    negative = (updates < 0).sum(axis=1)
    return np.stack([positive, size - positive - negative, negative], axis=1) / size


def largest_mean_shift_cluster(features: np.ndarray, quantile: float) -> np.ndarray:
    """Bool mask of the most populated Mean-Shift cluster (bandwidth estimated at ``quantile``)."""
    from sklearn.cluster import MeanShift, estimate_bandwidth

    n = len(features)
    bandwidth = estimate_bandwidth(features, quantile=quantile)
    if not np.isfinite(bandwidth) or bandwidth <= 0:  # identical features: one cluster
        return np.ones(n, dtype=bool)
    labels = MeanShift(bandwidth=bandwidth, bin_seeding=False).fit_predict(features)
    values, counts = np.unique(labels, return_counts=True)
    return labels == values[np.argmax(counts)]


class SignGuard:
    """Clipped mean of the updates that pass SignGuard's norm and sign filters.

    Parameters
    ----------
    lower, upper : the norm filter keeps ``lower <= |x_i| / median <= upper`` (paper: 0.1 and 3.0).
    coordinate_fraction : share of coordinates drawn (keyed by seed and round) for the sign statistics
        (paper: 0.1).
    bandwidth_quantile : the quantile of pairwise distances Mean-Shift's bandwidth is estimated at.

    SignGuard assumes an honest majority and no attacker count. ``ctx.signals["signguard_kept"]`` is 1 for
    each trusted party.
    """

    name = "signguard"

    def __init__(
        self,
        *,
        lower: float = 0.1,
        upper: float = 3.0,
        coordinate_fraction: float = 0.1,
        bandwidth_quantile: float = 0.5,
    ) -> None:
        self.lower = check_positive("lower", lower)
        self.upper = check_positive("upper", upper)
        if self.upper <= self.lower:
            raise ValueError(f"upper must exceed lower; got lower={lower}, upper={upper}")
        self.coordinate_fraction = check_fraction(
            "coordinate_fraction", coordinate_fraction, upper=1, closed=True
        )
        if self.coordinate_fraction == 0:
            raise ValueError("coordinate_fraction must be > 0")
        self.bandwidth_quantile = check_fraction(
            "bandwidth_quantile", bandwidth_quantile, upper=1, closed=True
        )
        if self.bandwidth_quantile == 0:
            raise ValueError("bandwidth_quantile must be > 0")

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        n, dim = u.shape
        norms = np.sqrt(row_sq_norms(u, ctx))
        median = float(np.median(norms))
        ratio = norms / median if median > 0 else np.ones(n)
        by_norm = (ratio >= self.lower) & (ratio <= self.upper)
        k = max(1, int(round(self.coordinate_fraction * dim)))
        cols = np.sort(generator(ctx.seed, ctx.round, Purpose.DEFENCE, 3).choice(dim, size=k, replace=False))
        by_sign = largest_mean_shift_cluster(sign_statistics(u[:, cols]), self.bandwidth_quantile)
        kept = by_norm & by_sign
        if not kept.any():
            kept = by_norm  # the filters disagree completely: trust the norm filter alone
        ctx.signals["signguard_kept"] = kept.astype(np.float64)
        scale = clip_factors(norms, median)
        return combine(np.where(kept, scale, 0.0) / kept.sum(), u)
