"""SCAFFOLD control variates (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging").

Each party keeps a control variate ``c_i`` and the server keeps ``c``; local gradients are
corrected by ``c - c_i`` so that parties with skewed data stop drifting toward their own optima.
Controls are updated with option II of the paper: ``c_i+ = c_i - c + (x - y_i) / (K_i * lr)``.
"""

from __future__ import annotations

import numpy as np


class ScaffoldControls:
    """Server control ``c [dim]`` and every party's ``c_i [N, dim]`` (kept as explicit arrays)."""

    def __init__(self, num_parties: int, dim: int) -> None:
        self.c = np.zeros(dim, np.float32)
        self.c_parties = np.zeros((num_parties, dim), np.float32)

    def correction(self, party_ids: np.ndarray) -> np.ndarray:
        """``c - c_i`` for each party, added to its local gradients."""
        return self.c[None, :] - self.c_parties[party_ids]

    def update(self, party_ids: np.ndarray, deltas: np.ndarray, steps: np.ndarray, lr: float) -> None:
        """Option II control update for the parties that reported, then the server's ``c``."""
        k = np.maximum(np.asarray(steps, dtype=np.float32), 1.0)[:, None]
        old = self.c_parties[party_ids]
        new = old - self.c[None, :] - deltas / (k * lr)
        self.c_parties[party_ids] = new
        n = self.c_parties.shape[0]
        self.c = (self.c + (len(party_ids) / n) * (new - old).mean(axis=0)).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"scaffold_c": self.c, "scaffold_c_parties": self.c_parties}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.c = arrays["scaffold_c"].astype(np.float32)
        self.c_parties = arrays["scaffold_c_parties"].astype(np.float32)
