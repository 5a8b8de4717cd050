"""Coordinate-wise median (Yin, Chen, Ramchandran and Bartlett 2018, "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML).

Each coordinate of the aggregate is the median of that coordinate across parties, so fewer than half of
the parties cannot move any coordinate outside the range of the honest values.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import check_round, reduce_sorted_columns, sorted_median


class CoordinateMedian:
    """Coordinate-wise median of the updates; breakdown point 1/2.

    Example counts are validated but not used: they are self-reported, and a weighted median would let one
    party that claims a huge count own every coordinate. Yin et al.'s rule is unweighted.
    """

    name = "median"

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        return reduce_sorted_columns(u, sorted_median, ctx=ctx)
