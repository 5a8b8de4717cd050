"""deai's recommended defence for a task with no root data: drop outsized updates, bound every norm by the
round's median, keep the majority direction, average by capped example counts.

1. norm filter: an update longer than ``NORM_CAP`` times the round's median norm is dropped (SignGuard's
   norm test, Xu et al. 2022): scaled attacks (sign-flip x4, IPM with a large epsilon) are long, and
   clipping alone would still count them at full median weight against the honest direction;
2. norm bounding: every update is clipped to the median norm of the round (an honest majority keeps the
   median at an honest norm), so no party weighs more than a typical one;
3. majority cluster: FLAME's HDBSCAN over the pairwise cosine distances, ``min_cluster_size = n/2 + 1``
   (Nguyen et al. 2022), finds the direction a majority agrees on;
4. readmission: an update outside that cluster but pointing the cluster's way (positive inner product
   with the cluster's clipped mean) is kept. Under label skew honest updates are diverse, and FLAME alone
   drops many of them (measured: 2.2 points of clean accuracy on Fashion-MNIST at Dirichlet 0.5); what it
   drops that still helps comes back, what pulls against the majority (sign-flip, IPM, min-max past the
   mean) stays out;
5. the clipped updates kept are averaged, weighted by their example counts capped at ``COUNT_CAP`` times
   the round's median count: counts are self-reported, so an inflated claim buys at most that many
   typical parties' weight, while honest size differences still count (uniform weights cost 0.8 points
   of clean accuracy on Fashion-MNIST at Dirichlet 0.5).

Threat model: a Byzantine minority (the task's ``f_max`` < 1/2) that may collude, know the honest updates
and know this rule. It does not cover a majority of attackers, attacks whose updates point with the
majority (a slow poison inside the majority cone, e.g. a small-norm backdoor), or Sybils beyond half the
round. It breaks under extreme label skew (Dirichlet 0.1, one or two classes a party): honest updates
are then as far from the majority direction as attackers are, and both the clean cost and the attacked
gap grow (measured in the README). Measured figures are in the README's robustness section.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import check_round, checked_gram, clip_factors, combine, row_dots
from deai.aggregate.robust.flame import cosine_distances, majority_cluster

NORM_CAP = 2.0  # an update longer than this many median norms is dropped
COUNT_CAP = 3.0  # a party's weight is at most this many times the round's median example count


class Recommended:
    """Norm filter, median-norm clipping, FLAME's majority cosine cluster plus readmission of aligned
    updates, and a mean weighted by capped example counts.

    No parameters: it assumes an honest majority and no attacker count, so the task's ``f_max`` is not
    passed to it. ``ctx.signals["recommended_kept"]`` is 1 for each kept party,
    ``ctx.signals["recommended_scale"]`` its clip factor and ``ctx.signals["recommended_weight"]`` its share
    of the weight.
    """

    name = "recommended"

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, w = check_round(updates, weights)

        def toward_the_majority(cluster: np.ndarray, scale: np.ndarray) -> np.ndarray:
            center = combine(np.where(cluster, scale, 0.0) / cluster.sum(), u)  # a direction: unweighted
            return row_dots(u, center) > 0

        return guarded_mean(u, w, ctx, self.name, toward_the_majority)


Witness = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (cluster, clip factors) -> readmitted rows


def guarded_mean(u: np.ndarray, w: np.ndarray, ctx: RoundContext, name: str, witness: Witness) -> np.ndarray:
    """Steps 1-5 with ``witness`` deciding which rows outside the majority cluster come back; sets
    ``ctx.signals[name + "_kept" / "_scale" / "_weight"]``. Nothing kept gives the zero update."""
    g = checked_gram(u, ctx)
    norms = np.sqrt(np.maximum(np.diag(g), 0.0))
    scale = clip_factors(norms)
    cluster = majority_cluster(cosine_distances(g))
    kept = (cluster | witness(cluster, scale)) & within_norm_cap(norms)
    ctx.signals[f"{name}_kept"] = kept.astype(np.float64)
    ctx.signals[f"{name}_scale"] = scale
    if not kept.any():
        ctx.signals[f"{name}_weight"] = np.zeros(len(u))
        return np.zeros(u.shape[1], dtype=np.float32)
    aggregate, ctx.signals[f"{name}_weight"] = capped_count_mean(u, w, kept, scale)
    return aggregate


def within_norm_cap(norms: np.ndarray) -> np.ndarray:
    """Step 1: the updates no longer than ``NORM_CAP`` median norms."""
    return norms <= NORM_CAP * np.median(norms)


def capped_count_mean(
    u: np.ndarray, w: np.ndarray, kept: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step 5: the clipped kept rows averaged by example counts capped at ``COUNT_CAP`` medians; also each
    party's share of that weight (0 for a dropped party)."""
    share = np.where(kept, np.minimum(w, COUNT_CAP * np.median(w)), 0.0)
    if share.sum() <= 0:  # the kept parties claim no examples: count each once
        share = kept.astype(np.float64)
    share = share / share.sum()
    return combine(scale * share, u), share
