"""SCAFFOLD control variates (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging").

Each party keeps a control variate ``c_i`` and the server keeps ``c``; local gradients are
corrected by ``c - c_i`` so that parties with skewed data stop drifting toward their own optima.
Controls are updated with option II of the paper: ``c_i+ = c_i - c + (x - y_i) / (K_i * lr)``.

The paper averages updates and controls uniformly. deai's mean weights parties by their number of
examples, so the server control must be the *same* weighted mean, ``c = sum_i p_i c_i``: only then does
``sum_i p_i (c - c_i)`` cancel in the aggregate. With a uniform ``c`` under a size-weighted mean, SCAFFOLD
descends the clinic-uniform objective instead, and on 88 clinics of very different sizes (two hold 70%
of the rows) its global steps were ~10x FedAvg's, its loss spiked to 3.0 and it ended at chance.
"""

from __future__ import annotations

import numpy as np


class ScaffoldControls:
    """Server control ``c [dim]`` and every party's ``c_i [N, dim]`` (kept as explicit arrays)."""

    def __init__(self, num_parties: int, dim: int, weights: np.ndarray | None = None) -> None:
        """``weights``: each party's weight in the aggregate (its example count for the weighted mean);
        None is uniform, the paper's setting (and DP-FedAvg's)."""
        self.c = np.zeros(dim, np.float32)
        self.c_parties = np.zeros((num_parties, dim), np.float32)
        w = np.ones(num_parties) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (num_parties,) or not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
            raise ValueError(f"weights must be {num_parties} finite non-negative numbers with a positive sum")
        self.p = (w / w.sum()).astype(np.float32)

    def correction(self, party_ids: np.ndarray) -> np.ndarray:
        """``c - c_i`` for each party, added to its local gradients."""
        return self.c[None, :] - self.c_parties[party_ids]

    def update(self, party_ids: np.ndarray, deltas: np.ndarray, steps: np.ndarray, lr: float) -> None:
        """Option II control update for the parties that reported, then the server's ``c``."""
        k = np.maximum(np.asarray(steps, dtype=np.float32), 1.0)[:, None]
        old = self.c_parties[party_ids]
        new = old - self.c[None, :] - deltas / (k * lr)
        self.c_parties[party_ids] = new
        # c = sum_i p_i c_i under partial participation too; uniform p: the paper's c += |S|/N mean(dc_i)
        self.c = (self.c + self.p[party_ids] @ (new - old)).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"scaffold_c": self.c, "scaffold_c_parties": self.c_parties}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.c = arrays["scaffold_c"].astype(np.float32)
        self.c_parties = arrays["scaffold_c_parties"].astype(np.float32)
