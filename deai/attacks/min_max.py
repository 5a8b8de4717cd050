"""Min-Max and Min-Sum, the aggregation-agnostic attacks of Shejwalkar and Houmansadr 2021, "Manipulating the
Byzantine: Optimizing Model Poisoning Attacks and Defenses for Federated Learning", NDSS.

All malicious parties send ``mean + gamma * p``: the honest mean pushed along a harmful direction ``p`` as far
as it can go while still looking honest. Min-Max keeps the malicious update's largest distance to an honest
update within the largest distance between two honest updates; Min-Sum keeps its sum of squared distances
to the honest updates within the largest such sum of an honest update. Rules that filter by distances
between updates (Krum, Bulyan, ...) then see nothing unusual, without the attacker knowing which rule runs,
and ``gamma`` is as large as that allows.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from deai.attacks._common import (
    COLUMN_BLOCK,
    AttackBase,
    column_mean_std,
    reference_rows,
)
from deai.attacks.base import RoundContext
from deai.checks import check_choice, check_positive

PERTURBATIONS = ("unit_vec", "std", "sign")
OBJECTIVES = ("min_max", "min_sum")
_MAX_DOUBLINGS = 64
_MAX_BISECTIONS = 200


def perturbation_vector(reference: np.ndarray, kind: str) -> np.ndarray:
    """The paper's harmful direction ``p`` (float64 ``[dim]``), opposite to the honest mean's.

    ``unit_vec``: ``-mean / |mean|``; ``std``: ``-std`` per coordinate; ``sign``: ``-sign(mean)``. A zero
    mean (or zero spread, for ``std``) gives ``p = 0``: no direction to push along.
    """
    check_choice("perturbation", kind, PERTURBATIONS)
    if kind == "std":
        return -column_mean_std(reference)[1]
    mean = reference.mean(axis=0, dtype=np.float64)
    if kind == "sign":
        return -np.sign(mean)
    norm = np.linalg.norm(mean)
    return -mean / norm if norm > 0 else np.zeros_like(mean)


def _centered_gram(reference: np.ndarray, mean: np.ndarray, perturbation: np.ndarray) -> np.ndarray:
    """Gram matrix of the rows ``reference - mean`` with ``perturbation`` appended, in float64.

    Centering first keeps the ``|a|^2 + |b|^2 - 2ab`` distances free of cancellation (the rows' common part
    is usually much larger than their differences), and a block of columns at a time avoids a float64 copy.
    BLAS runs on one thread: threads made a ``[100, 1e6]`` Gram a few times faster on an idle machine but
    over 10x slower on an oversubscribed one (threads spin waiting for cores), where simulations often run.
    """
    n, dim = reference.shape
    gram = np.zeros((n + 1, n + 1))
    block = np.empty((n + 1, min(dim, COLUMN_BLOCK)))
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(0, dim, COLUMN_BLOCK):
            stop = min(start + COLUMN_BLOCK, dim)
            b = block[:, : stop - start]
            np.subtract(reference[:, start:stop], mean[start:stop], out=b[:n])
            b[n] = perturbation[start:stop]
            gram += b @ b.T
    return gram


def largest_gamma(
    reference: np.ndarray,
    perturbation: np.ndarray,
    objective: str,
    *,
    gamma_init: float = 10.0,
    tolerance: float = 1e-5,
) -> float:
    """The largest ``gamma`` for which ``mean(reference) + gamma * perturbation`` meets ``objective``.

    The paper's Algorithm 1, a halving search on ``gamma`` from ``gamma_init``, with two changes: ``gamma``
    first doubles while feasible, so the answer is not capped at ``2 * gamma_init`` (the paper's search
    cannot go higher), and the stopping width is relative (``tolerance * gamma``) rather than absolute, so
    the result is equally tight whatever the scale of the updates. The feasible ``gamma`` form an interval
    containing 0 (a line through the mean, which meets both constraints, intersected with a convex set), so
    the search finds its upper end. Each step costs ``O(n)``: the distances of ``mean + gamma * p`` to every
    row follow from one Gram matrix of the centered rows and ``p``.
    """
    check_choice("objective", objective, OBJECTIVES)
    n = reference.shape[0]
    mean = reference.mean(axis=0, dtype=np.float64)
    gram = _centered_gram(reference, mean, np.asarray(perturbation, dtype=np.float64))
    sq_norms, p_dot, pp = np.diag(gram)[:n], gram[:n, n], gram[n, n]
    if pp <= 0:
        return 0.0
    pairwise = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram[:n, :n], 0.0)

    # |mean + g p - x_i|^2 = |g p - a_i|^2 with a_i = x_i - mean
    def sq_distances(gamma: float) -> np.ndarray:
        return gamma * gamma * pp - 2.0 * gamma * p_dot + sq_norms

    if objective == "min_max":
        reduce, bound = np.max, pairwise.max()
    else:
        reduce, bound = np.sum, pairwise.sum(axis=1).max()

    def feasible(gamma: float) -> bool:
        return bool(reduce(sq_distances(gamma)) <= bound)

    lo, hi = 0.0, float(gamma_init)
    for _ in range(_MAX_DOUBLINGS):
        if not feasible(hi):
            break
        lo, hi = hi, 2.0 * hi
    else:
        return lo
    for _ in range(_MAX_BISECTIONS):
        if hi - lo <= tolerance * hi:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if feasible(mid) else (lo, mid)
    return lo


class _AggregationAgnostic(AttackBase):
    """``mean + gamma * p`` with ``gamma`` from :func:`largest_gamma` under the subclass's objective."""

    def __init__(self, *, perturbation: str = "unit_vec", gamma_init: float = 10.0, tolerance: float = 1e-5):
        self.perturbation = check_choice("perturbation", perturbation, PERTURBATIONS)
        self.gamma_init = check_positive("gamma_init", gamma_init)
        self.tolerance = check_positive("tolerance", tolerance)

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        reference = reference_rows(updates, malicious)
        p = perturbation_vector(reference, self.perturbation)
        gamma = largest_gamma(reference, p, self.name, gamma_init=self.gamma_init, tolerance=self.tolerance)
        return reference.mean(axis=0, dtype=np.float64) + gamma * p


class MinMax(_AggregationAgnostic):
    """Min-Max: ``max_i |m - x_i| <= max_ij |x_i - x_j|`` over honest updates ``x`` (omniscient).

    Parameters
    ----------
    perturbation : ``"unit_vec"`` (default, ``p = -mean/|mean|``, the paper's best overall), ``"std"``
        (``-std`` per coordinate) or ``"sign"`` (``-sign(mean)``).
    gamma_init : the search's first ``gamma``, 10 as in the paper's code; it only affects how many steps the
        search takes, not where it ends.
    tolerance : relative width at which the search stops; the returned ``gamma`` always meets the
        constraint (up to float32 rounding of the sent update).

    All malicious parties send the same update. When every row is malicious the parties' own updates stand
    in for the honest ones.
    """

    name = "min_max"


class MinSum(_AggregationAgnostic):
    """Min-Sum: ``sum_i |m - x_i|^2 <= max_k sum_i |x_k - x_i|^2`` over honest updates ``x`` (omniscient).

    Parameters are those of :class:`MinMax`. Because the cross terms of a centered sum vanish, the largest
    ``gamma`` puts the malicious update exactly as far from the honest mean as the farthest honest update;
    the search finds it without relying on that.
    """

    name = "min_sum"
