"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui and Stainer 2017, "Machine Learning with
Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS).

A party's Krum score is the sum of squared distances to its ``n - f - 2`` nearest other updates: an honest
update sits among ``n - f - 1`` other honest ones, so its score stays small however the ``f`` Byzantine
updates are placed. Krum returns the best-scored update; Multi-Krum averages the ``m`` best.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import (
    byzantine_count,
    check_bound,
    check_round,
    checked_gram,
    combine,
    pairwise_sq_distances,
)
from deai.checks import check_count


def krum_scores(sq_distances: np.ndarray, num_byzantine: int) -> np.ndarray:
    """Each row's sum of squared distances to its ``n - f - 2`` nearest other rows (``n >= 2f + 3``)."""
    n = len(sq_distances)
    neighbours = n - num_byzantine - 2
    d = sq_distances.copy()
    np.fill_diagonal(d, np.inf)  # a party is not its own neighbour
    return np.sort(d, axis=1)[:, :neighbours].sum(axis=1)


def check_krum_size(n: int, num_byzantine: int, rule: str) -> None:
    if n < 2 * num_byzantine + 3:
        raise ValueError(
            f"{rule} needs n >= 2 * num_byzantine + 3 updates; got n={n} with num_byzantine={num_byzantine}"
            f" - lower num_byzantine to at most {max((n - 3) // 2, 0)} or aggregate more parties"
        )


class MultiKrum:
    """Average of the ``num_selected`` updates with the lowest Krum scores.

    Parameters
    ----------
    num_byzantine, f_max : the attacker bound: ``f`` updates, or the share ``f_max`` of the round's updates
        (``f = floor(f_max n)``, the task's ``strategy.f_max``); exactly one is needed. Needs ``n >= 2f + 3``.
    num_selected : ``m``, how many best-scored updates to average; default ``n - f`` (every update that can
        be honest). Must not exceed ``n``.

    The selected updates are averaged uniformly, as in the paper: weighting by self-reported example counts
    would let a selected Byzantine party inflate its share. Pairwise distances come from one Gram matrix
    (``|a|^2 + |b|^2 - 2ab``), so the cost is one ``[P, dim] x [dim, P]`` product rather than ``P^2`` passes.
    ``ctx.signals["krum_score"]`` holds each party's score and ``ctx.signals["krum_weight"]`` its weight in
    the aggregate (``1/m`` if selected, else 0).
    """

    name = "multi_krum"

    def __init__(
        self, *, num_byzantine: int | None = None, f_max: float | None = None, num_selected: int | None = None
    ) -> None:
        check_bound(num_byzantine, f_max, self.name)
        self.num_byzantine, self.f_max = num_byzantine, f_max
        self.num_selected = None if num_selected is None else check_count("num_selected", num_selected, 1)

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        n = u.shape[0]
        f = byzantine_count(n, self.num_byzantine, self.f_max)
        check_krum_size(n, f, self.name)
        m = n - f if self.num_selected is None else self.num_selected
        if m > n:
            raise ValueError(f"num_selected={m} exceeds the number of updates n={n}")
        scores = krum_scores(pairwise_sq_distances(checked_gram(u, ctx)), f)
        selected = np.argsort(scores, kind="stable")[:m]  # ties go to the lower row, like argmin
        weight = np.zeros(n)
        weight[selected] = 1.0 / m
        ctx.signals["krum_score"] = scores
        ctx.signals["krum_weight"] = weight
        if m == 1:
            return u[selected[0]].copy()
        return combine(weight, u)


class Krum(MultiKrum):
    """The single update with the lowest Krum score (Multi-Krum with ``m = 1``).

    Parameters
    ----------
    num_byzantine, f_max : the attacker bound: ``f`` updates, or the share ``f_max`` of the round's updates
        (``f = floor(f_max n)``, the task's ``strategy.f_max``); exactly one is needed. Needs ``n >= 2f + 3``.
    """

    name = "krum"

    def __init__(self, *, num_byzantine: int | None = None, f_max: float | None = None) -> None:
        super().__init__(num_byzantine=num_byzantine, f_max=f_max, num_selected=1)
