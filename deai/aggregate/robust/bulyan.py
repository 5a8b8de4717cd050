"""Bulyan (El Mhamdi, Guerraoui and Rouault 2018, "The Hidden Vulnerability of Distributed Learning in
Byzantium", ICML).

Krum alone lets an attacker hide a large change in a few coordinates inside a small total distance. Bulyan
first selects ``theta = n - 2f`` updates by applying Krum recursively (each step picks the best-scored update
among those left and removes it), then aggregates every coordinate by averaging the ``beta = theta - 2f``
selected values closest to that coordinate's median, which bounds each coordinate's deviation too.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import (
    byzantine_count,
    check_bound,
    check_round,
    checked_gram,
    pairwise_sq_distances,
    reduce_sorted_columns,
    sorted_median,
)


def bulyan_select(sq_distances: np.ndarray, num_byzantine: int, count: int) -> np.ndarray:
    """Rows chosen by ``count`` recursive Krum steps, in the order chosen.

    Each step scores the ``r`` remaining rows by their ``max(r - f - 2, 0)`` nearest remaining neighbours;
    the loop runs over selection steps (at most ``n``) on the ``[n, n]`` distance matrix, never over ``dim``.
    """
    n = len(sq_distances)
    remaining = np.ones(n, dtype=bool)
    chosen = np.empty(count, dtype=np.int64)
    for step in range(count):
        idx = np.flatnonzero(remaining)
        d = sq_distances[np.ix_(idx, idx)]
        np.fill_diagonal(d, np.inf)
        neighbours = max(len(idx) - num_byzantine - 2, 0)
        scores = np.sort(d, axis=1)[:, :neighbours].sum(axis=1)
        chosen[step] = idx[np.argmin(scores)]
        remaining[chosen[step]] = False
    return chosen


def closest_to_median_mean(values: np.ndarray, keep: int) -> np.ndarray:
    """Per row of an ascending-sorted ``[b, k]`` block, the mean of the ``keep`` values closest to its median.

    In sorted order those values form a contiguous window, the one among the ``k - keep + 1`` windows whose
    farther end is nearest the median, so no per-coordinate argsort of distances is needed.
    """
    k = values.shape[1]
    med = sorted_median(values)[:, None]
    starts = k - keep + 1
    reach = np.maximum(med - values[:, :starts], values[:, keep - 1 : keep - 1 + starts] - med)
    first = np.argmin(reach, axis=1)
    window = first[:, None] + np.arange(keep)
    return np.take_along_axis(values, window, axis=1).mean(axis=1)


class Bulyan:
    """Recursive-Krum selection of ``n - 2f`` updates, then a median-centred coordinate-wise trimmed mean.

    Parameters
    ----------
    num_byzantine, f_max : the attacker bound: ``f`` updates, or the share ``f_max`` of the round's updates
        (``f = floor(f_max n)``, the task's ``strategy.f_max``); exactly one is needed. Bulyan needs
        ``n >= 4f + 3``.

    Unweighted, as in the paper. ``ctx.signals["bulyan_selected"]`` marks the updates the coordinate-wise
    stage saw. Cost: one Gram matrix (as Krum) plus a sort of ``n - 2f`` values per coordinate.
    """

    name = "bulyan"

    def __init__(self, *, num_byzantine: int | None = None, f_max: float | None = None) -> None:
        check_bound(num_byzantine, f_max, self.name)
        self.num_byzantine, self.f_max = num_byzantine, f_max

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        n = u.shape[0]
        f = byzantine_count(n, self.num_byzantine, self.f_max)
        if n < 4 * f + 3:
            raise ValueError(
                f"bulyan needs n >= 4 * num_byzantine + 3 updates; got n={n} with num_byzantine={f}"
                f" - lower num_byzantine to at most {max((n - 3) // 4, 0)} or aggregate more parties"
            )
        theta = n - 2 * f
        keep = theta - 2 * f
        chosen = bulyan_select(pairwise_sq_distances(checked_gram(u, ctx)), f, theta)
        selected = np.zeros(n, dtype=bool)
        selected[chosen] = True
        ctx.signals["bulyan_selected"] = selected
        # Sorted row order keeps the per-block gather sequential in memory.
        return reduce_sorted_columns(
            u, lambda v: closest_to_median_mean(v, keep), rows=np.sort(chosen), ctx=ctx
        )
