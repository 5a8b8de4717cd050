"""Centered clipping (Karimireddy, He and Jaggi 2021, "Learning from History for Byzantine Robust
Optimization", ICML).

Starting from the previous round's aggregate ``v``, iterate ``v <- v + (1/n) sum_i clip_tau(x_i - v)`` with
``clip_tau(d) = d * min(1, tau / |d|)``. Each party moves ``v`` by at most ``tau / n`` per iteration, so ``f``
Byzantine parties shift it by at most ``f tau / n`` however large their updates are, while honest updates
within ``tau`` of ``v`` enter the average unclipped. Starting from the last aggregate is the "history" the
title refers to: with server momentum it is already close to the honest mean.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import (
    check_round,
    clip_factors,
    combine,
    row_dots,
    row_sq_norms,
)
from deai.checks import check_count, check_positive


class CenteredClipping:
    """Centered clipping around the previous aggregate, which it keeps as state (zeros before round one).

    Parameters
    ----------
    clip_radius : ``tau`` > 0, in the units of the updates: about the honest updates' distance from their
        mean, so honest updates are rarely clipped. Default: each round, the median distance of the round's
        updates from the center (an honest majority keeps it at an honest distance).
    n_iter : clipping iterations per round; one, as in the authors' experiments and code, suffices when the
        center carries history.

    Unweighted, as in the paper: with example-count weights one party could claim a large share of each
    ``tau`` step. Distances ``|x_i - v|`` come from ``|x_i|^2 - 2 x_i.v + |v|^2`` (two matrix-vector products
    per iteration, no ``[P, dim]`` temporary), accurate while ``|x_i - v|`` exceeds ~1e-3 ``|x_i|``: a
    ``tau`` below that scale would clip on rounding noise. ``ctx.signals["centered_clipping_scale"]`` holds
    each party's factor ``min(1, tau / |x_i - v|)`` in the last iteration. ``state()``/``load()`` carry the
    center.
    """

    name = "centered_clipping"

    def __init__(self, *, clip_radius: float | None = None, n_iter: int = 1) -> None:
        self.clip_radius = None if clip_radius is None else check_positive("clip_radius", clip_radius)
        self.n_iter = check_count("n_iter", n_iter, 1)
        self._center = np.zeros(0, dtype=np.float32)  # empty until the first round fixes dim

    def state(self) -> dict[str, np.ndarray]:
        """``{"center": [dim] float32}``; empty before the first round."""
        return {"center": self._center.copy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        center = np.asarray(state["center"], dtype=np.float32)
        if center.ndim != 1 or not np.isfinite(center).all():
            raise ValueError("state['center'] must be a finite 1-D array (the previous aggregate)")
        self._center = center.copy()

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        n, dim = u.shape
        if self._center.size == 0:
            self._center = np.zeros(dim, dtype=np.float32)
        elif self._center.shape != (dim,):
            raise ValueError(f"updates have dim {dim} but the stored center has dim {self._center.size}")
        sq = row_sq_norms(u, ctx)
        v = self._center
        scale = np.ones(n)
        for _ in range(self.n_iter):
            v64 = v.astype(np.float64)
            dist = np.sqrt(np.maximum(sq - 2.0 * row_dots(u, v) + v64 @ v64, 0.0))
            scale = clip_factors(dist, self.clip_radius)
            step = scale / n
            v = combine(step, u) + np.float32(1.0 - step.sum()) * v
        ctx.signals["centered_clipping_scale"] = scale
        self._center = v
        return v.copy()
