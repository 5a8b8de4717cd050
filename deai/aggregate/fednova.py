"""FedNova normalized averaging (Wang et al. 2020, "Tackling the Objective Inconsistency Problem").

Parties that take more local steps move further; plain averaging then drifts toward their
objectives. FedNova divides each update by its number of local steps ``tau_i`` and rescales the
average by the effective step count ``tau_eff = sum_i p_i tau_i`` (vanilla-SGD local solver,
``||a_i||_1 = tau_i``).
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext, normalized_weights


class FedNova:
    name = "fednova"
    weights_parties = True  # each party's share of the aggregate is its weight

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        p = normalized_weights(weights)
        tau = np.maximum(np.asarray(ctx.steps, dtype=np.float64), 1.0)
        tau_eff = float(p @ tau)
        return (tau_eff * (p / tau)).astype(np.float32) @ updates
