"""Coordinate-wise trimmed mean (Yin, Chen, Ramchandran and Bartlett 2018, "Byzantine-Robust Distributed
Learning: Towards Optimal Statistical Rates", ICML).

Each coordinate drops its ``floor(beta * P)`` largest and smallest values across parties and averages the
rest, so up to that many Byzantine parties per side cannot move a coordinate outside the honest range,
while the remaining values are averaged for a better statistical rate than the median.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import check_round, reduce_sorted_columns
from deai.checks import check_fraction


class TrimmedMean:
    """Coordinate-wise ``beta``-trimmed mean, matching ``scipy.stats.trim_mean(updates, beta, axis=0)``.

    Parameters
    ----------
    trim_fraction : ``beta`` in ``[0, 0.5)``, the fraction trimmed from *each* side of every coordinate;
        ``int(beta * P)`` values per side, as in scipy. Default: the task's ``f_max`` (the assumed share of
        Byzantine parties), else 0.1.
    f_max : the task's declared Byzantine share, used as ``beta`` when ``trim_fraction`` is not given.

    Example counts are validated but not used (Yin et al.'s rule is unweighted; counts are self-reported).
    """

    name = "trimmed_mean"

    def __init__(self, *, trim_fraction: float | None = None, f_max: float | None = None) -> None:
        if trim_fraction is None:
            trim_fraction = 0.1 if f_max is None else f_max
        self.trim_fraction = check_fraction("trim_fraction", trim_fraction, upper=0.5, closed=False)

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        n = u.shape[0]
        cut = int(self.trim_fraction * n)
        return reduce_sorted_columns(u, lambda v: v[:, cut : n - cut].mean(axis=1), ctx=ctx)
