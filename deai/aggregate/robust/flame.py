"""FLAME (Nguyen, Rieger, Chen, Yalame, Möllering, Fereidooni, Marchal, Miettinen, Mirhoseini, Zeitouni,
Koushanfar, Sadeghi and Schneider 2022, "FLAME: Taming Backdoors in Federated Learning", USENIX Security,
Algorithm 1).

Three layers, each estimated from the round itself:
1. clustering: HDBSCAN on the updates' pairwise cosine distances, with ``min_cluster_size = n/2 + 1``, so
   only a cluster holding a majority is admitted; updates pointing elsewhere (sign-flip, IPM, backdoors
   with a distinct direction) fall out as noise;
2. adaptive clipping: every admitted update is clipped to the median update norm ``S`` of the round;
3. adaptive noise: Gaussian noise of standard deviation ``lambda * S`` per coordinate on the aggregate,
   which the paper adds to wash out what a clipped backdoor left (``lambda = 0.001`` for image tasks).
The paper clusters local models ``W_i``; with a shared global model the cosine distances of the updates
``W_i - G`` are the discriminative part, and are what this rule clusters.
"""

from __future__ import annotations

import numpy as np

from deai.aggregate.base import RoundContext
from deai.aggregate.robust._common import check_round, checked_gram, clip_factors, combine
from deai.checks import check_non_negative
from deai.rng import Purpose, generator


def cosine_distances(gram: np.ndarray) -> np.ndarray:
    """``1 - cos(x_i, x_j)`` from the Gram matrix, in ``[0, 2]``; a zero row is at distance 1 from all."""
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    denom = np.outer(norms, norms)
    cos = np.divide(gram, denom, out=np.zeros_like(gram), where=denom > 0)
    d = np.clip(1.0 - cos, 0.0, 2.0)
    np.fill_diagonal(d, 0.0)
    return d


def majority_cluster(distances: np.ndarray, min_samples: int = 1) -> np.ndarray:
    """Bool mask of the HDBSCAN cluster holding more than half the rows (all rows if none does).

    ``min_samples`` is HDBSCAN's density neighbourhood: FLAME's 1 lets any tight group look dense.
    """
    from sklearn.cluster import HDBSCAN

    n = len(distances)
    if n < 3:
        return np.ones(n, dtype=bool)
    labels = HDBSCAN(
        min_cluster_size=n // 2 + 1,
        min_samples=max(1, min(min_samples, n - 1)),
        metric="precomputed",
        allow_single_cluster=True,
        copy=True,
    ).fit_predict(distances)
    clusters, counts = np.unique(labels[labels >= 0], return_counts=True)
    if len(clusters) == 0:
        return np.ones(n, dtype=bool)
    return labels == clusters[np.argmax(counts)]


class FLAME:
    """Mean of the majority cosine cluster's updates, clipped to the round's median norm, plus noise.

    Parameters
    ----------
    noise_lambda : ``lambda`` >= 0, the noise level relative to the clipping bound (paper: 0.001 for image
        classification, 0.01 for NLP); 0 turns the noise layer off.

    FLAME assumes only an honest majority (it admits a cluster of more than half the updates) and no
    attacker count. The admitted updates are averaged uniformly, as in the paper. The noise is keyed by the
    run seed and round (``deai.rng``): it is a robustness layer, not differential privacy.
    ``ctx.signals["flame_admitted"]`` is 1 for each admitted party and ``ctx.signals["flame_scale"]`` its
    clip factor.
    """

    name = "flame"

    def __init__(self, *, noise_lambda: float = 0.001) -> None:
        self.noise_lambda = check_non_negative("noise_lambda", noise_lambda)

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        u, _ = check_round(updates, weights)
        g = checked_gram(u, ctx)
        admitted = majority_cluster(cosine_distances(g))
        norms = np.sqrt(np.maximum(np.diag(g), 0.0))
        bound = float(np.median(norms))
        scale = clip_factors(norms, bound)
        ctx.signals["flame_admitted"] = admitted.astype(np.float64)
        ctx.signals["flame_scale"] = scale
        coefficients = np.where(admitted, scale, 0.0) / admitted.sum()
        aggregate = combine(coefficients, u)
        sigma = self.noise_lambda * bound
        if sigma > 0:
            rng = generator(ctx.seed, ctx.round, Purpose.DEFENCE, 2)
            aggregate += (sigma * rng.standard_normal(aggregate.shape[0])).astype(np.float32)
        return aggregate
