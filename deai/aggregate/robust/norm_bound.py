"""Norm bounding (Sun, Kairouz, Suresh and McMahan 2019, "Can You Really Backdoor Federated Learning?").

A backdoor update must be large to survive averaging with many honest ones. Clipping every update to an
L2 norm of at most ``M`` before the weighted mean caps what any one party can contribute, at the price of
also shrinking honest updates larger than ``M``. (The paper's "weak differential privacy" noise is a
separate transform; this rule is the clipping defence alone.)
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import check_round, clip_factors, combine, row_sq_norms
from deai.checks import check_positive


class NormBound:
    """Example-count-weighted mean of the updates, each first scaled to norm at most ``max_norm``.

    Parameters
    ----------
    max_norm : ``M`` > 0, in the units of the updates. Default: the median norm of the round's own
        updates, which needs no clean reference and which a Byzantine minority cannot raise above the
        largest honest norm.

    The clip is folded into the mean's coefficients (``p_i min(1, M / |x_i|)``), so the call is one norm pass
    and one matrix-vector product. ``ctx.signals["norm_bound_scale"]`` holds each party's clip factor.
    """

    name = "norm_bound"
    weights_parties = True  # each party's share of the aggregate is its weight

    def __init__(self, *, max_norm: float | None = None) -> None:
        self.max_norm = None if max_norm is None else check_positive("max_norm", max_norm)

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, w = check_round(updates, weights)
        norms = np.sqrt(row_sq_norms(u, ctx))
        scale = clip_factors(norms, self.max_norm)
        ctx.signals["norm_bound_scale"] = scale
        return combine(w / w.sum() * scale, u)
