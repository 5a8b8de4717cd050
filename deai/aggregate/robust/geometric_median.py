"""Geometric median by smoothed Weiszfeld iterations: RFA (Pillutla, Kakade and Harchaoui 2022, "Robust
Aggregation for Federated Learning", IEEE Transactions on Signal Processing).

The weighted geometric median ``argmin_z sum_i alpha_i |z - x_i|`` has breakdown point 1/2 and, unlike the
coordinate-wise median, does not depend on the basis. Weiszfeld's iteration ``z <- sum_i beta_i x_i /
sum_i beta_i`` with ``beta_i = alpha_i / max(nu, |z - x_i|)`` (the ``nu``-smoothed version of RFA's
Algorithm 2) converges to it.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import check_round, checked_gram, combine
from deai.checks import check_count, check_positive


class GeometricMedian:
    """Weighted geometric median of the updates (RFA), weights proportional to example counts.

    Parameters
    ----------
    smoothing : ``nu`` > 0; distances below it count as ``nu``, which keeps the iteration defined when the
        estimate lands on an update. It is in the units of the updates: keep it well below their spread.
    max_iter : most Weiszfeld iterations.
    tolerance : stop when the objective changes by at most ``tolerance`` times its value (RFA's rule).

    Every iterate is a convex combination ``z = sum_j c_j x_j`` of the updates (it starts at the weighted
    mean), so with the Gram matrix ``G`` of the updates ``|z - x_i|^2 = G_ii - 2 (G c)_i + c'Gc``: the
    iterations run on ``P``-vectors, and the whole call costs one Gram product plus one final matrix-vector
    product whatever ``max_iter`` is. ``ctx.signals["geometric_median_weight"]`` holds the final ``c``, the
    weight each party's update has in the result, and ``last_iterations`` the iterations used.

    The breakdown point is half the *weight*, and example counts are self-reported: verify or cap them
    (or pass equal weights) when parties may lie about them.
    """

    name = "geometric_median"

    def __init__(self, *, smoothing: float = 1e-6, max_iter: int = 100, tolerance: float = 1e-6) -> None:
        self.smoothing = check_positive("smoothing", smoothing)
        self.max_iter = check_count("max_iter", max_iter, 1)
        self.tolerance = check_positive("tolerance", tolerance)
        self.last_iterations = 0

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, w = check_round(updates, weights)
        alpha = w / w.sum()
        g = checked_gram(u, ctx)
        sq = np.diag(g)

        def distances(c: np.ndarray) -> np.ndarray:
            gc = g @ c
            return np.sqrt(np.maximum(sq - 2.0 * gc + c @ gc, 0.0))

        c = alpha
        d = distances(c)
        objective = alpha @ d
        iterations = 0
        while iterations < self.max_iter:
            iterations += 1
            beta = alpha / np.maximum(self.smoothing, d)
            c = beta / beta.sum()
            d = distances(c)
            previous, objective = objective, alpha @ d
            if abs(previous - objective) <= self.tolerance * objective:
                break
        self.last_iterations = iterations
        ctx.signals["geometric_median_weight"] = c
        return combine(c, u)
