"""Divide-and-Conquer (Shejwalkar and Houmansadr 2021, "Manipulating the Byzantine: Optimizing Model
Poisoning Attacks and Defenses for Federated Learning", NDSS, Algorithm 2).

Poisoning updates that stay inside the honest updates' spread (min-max, min-sum, ALIE) still share one
direction: the attacker's. Centered on their mean, the updates' largest principal direction is then the
attacker's, and projecting on it separates the malicious rows. DnC does this on ``niters`` random
subsets of ``b`` coordinates (cheap, and an attacker cannot hide in coordinates it does not know will be
drawn), drops the ``c * f`` rows with the largest squared projections each time, and averages the rows
that were never dropped.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import (
    byzantine_count,
    check_bound,
    check_round,
    raise_non_finite,
)
from deai.checks import check_count, check_positive
from deai.rng import Purpose, generator


def dnc_outlier_scores(sub: np.ndarray) -> np.ndarray:
    """``<x_i - mean, v>^2`` with ``v`` the top right singular vector of the centered ``[n, b]`` rows.

    From the ``n x n`` Gram matrix of the centered rows: its top eigenpair ``(lambda, u)`` gives
    ``(X_c v)_i = sqrt(lambda) u_i``, so the score is ``lambda u_i^2`` without an SVD of the wide matrix.
    """
    centered = sub - sub.mean(axis=0, dtype=np.float64)
    gram = centered @ centered.T
    values, vectors = np.linalg.eigh(gram)
    return max(values[-1], 0.0) * vectors[:, -1] ** 2


class DivideAndConquer:
    """Mean of the updates DnC never flags as outliers in ``niters`` random coordinate subsets.

    Parameters
    ----------
    num_byzantine, f_max : the attacker bound, a count or the round's share (the task's ``strategy.f_max``);
        exactly one is needed.
    niters : number of random coordinate subsets (the paper's default 5).
    subsample_dim : ``b``, coordinates per subset (the paper's 10,000); the whole update when it is shorter.
    filter_frac : ``c``, the paper's filtering fraction: ``c * f`` rows are dropped per subset (default 1).

    The kept rows are averaged uniformly, as in the paper (example counts are self-reported). If every row
    is flagged (possible only with ``c * f >= n``) the rule refuses with a ``ValueError``.
    ``ctx.signals["dnc_kept"]`` is 1 for each kept party, else 0.
    """

    name = "dnc"

    def __init__(
        self,
        *,
        num_byzantine: int | None = None,
        f_max: float | None = None,
        niters: int = 5,
        subsample_dim: int = 10_000,
        filter_frac: float = 1.0,
    ) -> None:
        check_bound(num_byzantine, f_max, "dnc")
        self.num_byzantine, self.f_max = num_byzantine, f_max
        self.niters = check_count("niters", niters, 1)
        self.subsample_dim = check_count("subsample_dim", subsample_dim, 1)
        self.filter_frac = check_positive("filter_frac", filter_frac)

    def kept(self, updates: np.ndarray, ctx: RoundContext) -> np.ndarray:
        """The bool mask of rows never flagged (``updates`` already checked, finite included)."""
        n, dim = updates.shape
        f = byzantine_count(n, self.num_byzantine, self.f_max)
        drop = int(self.filter_frac * f)
        if drop >= n:
            raise ValueError(
                f"dnc would drop all {n} updates (filter_frac * f = {drop}); lower filter_frac or f_max"
            )
        keep = np.ones(n, dtype=bool)
        if drop == 0:
            return keep
        rng = generator(ctx.seed, ctx.round, Purpose.DEFENCE, 1)
        b = min(self.subsample_dim, dim)
        for _ in range(self.niters):
            cols = np.sort(rng.choice(dim, size=b, replace=False)) if b < dim else slice(None)
            scores = dnc_outlier_scores(updates[:, cols])  # centered in float64, no float64 copy of the rows
            flagged = np.argsort(scores, kind="stable")[n - drop :]
            keep[flagged] = False
        return keep

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        if not np.isfinite(u).all():
            raise_non_finite(u, ctx)
        keep = self.kept(u, ctx)
        ctx.signals["dnc_kept"] = keep.astype(np.float64)
        if not keep.any():
            raise ValueError("dnc flagged every update in some subset; lower filter_frac or f_max")
        return u[keep].mean(axis=0, dtype=np.float64).astype(np.float32)
