"""The defence-tailored attack of Shejwalkar and Houmansadr 2021 ("Manipulating the Byzantine: Optimizing
Model Poisoning Attacks and Defenses for Federated Learning", NDSS, Section IV-B, "AGR-tailored"):

    maximize over gamma   | defence(honest rows + f copies of mean + gamma p) - mean(honest rows) |

An attacker who knows the aggregation rule evaluates it on candidate rounds and sends the ``gamma`` that
moves the defence's own output farthest from the honest mean. Where min-max and min-sum stay inside a
fixed honesty constraint, this attack finds the largest deviation the given rule lets through, whatever
statistic the rule uses: far outside the honest spread for a rule that only clips, just under the
threshold of a rule that filters. It is the "holds against an attacker who knows the defence" test.

The search: the defence is evaluated on a geometric grid of ``gamma`` around the min-max ``gamma`` (from
``2^-3`` to ``2^10`` times it), then a golden-section search refines the best grid cell. A stateful rule is
probed on a copy, so probing never changes the real round.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deai.attacks._common import AttackBase, reference_rows
from deai.attacks.base import RoundContext
from deai.attacks.min_max import PERTURBATIONS, largest_gamma, perturbation_vector
from deai.checks import check_choice, check_count

DEFENCE = "defence"  # ctx.extra key: ``probe(updates, weights) -> aggregate`` on a copy of the real rule
Probe = Callable[[np.ndarray, np.ndarray], np.ndarray]
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


class Adaptive(AttackBase):
    """All malicious parties send ``mean + gamma * p`` with ``gamma`` maximizing the defence's deviation.

    Parameters
    ----------
    perturbation : ``p``, as for min-max: ``"unit_vec"`` (default), ``"std"`` or ``"sign"``.
    refine_steps : golden-section steps after the grid (default 6).

    Needs ``ctx.extra["defence"]``, a probe of the round's aggregation rule, which the simulation supplies
    (the attacker knows the rule and its configuration, and, being omniscient, the honest updates).
    ``ctx.extra["adaptive_gamma"]`` records the ``gamma`` sent.
    """

    name = "adaptive"

    def __init__(self, *, perturbation: str = "unit_vec", refine_steps: int = 6) -> None:
        self.perturbation = check_choice("perturbation", perturbation, PERTURBATIONS)
        self.refine_steps = check_count("refine_steps", refine_steps)

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        probe = ctx.extra.get(DEFENCE)
        if not callable(probe):
            raise ValueError(
                "the adaptive attack needs the defence it is tailored to: ctx.extra['defence'] must be a "
                "probe(updates, weights) -> aggregate (the simulation supplies one)"
            )
        reference = reference_rows(updates, malicious)
        mean = reference.mean(axis=0, dtype=np.float64)
        p = perturbation_vector(reference, self.perturbation)
        weights = np.asarray(ctx.weights if ctx.weights is not None else np.ones(len(updates)), np.float64)
        gamma = tailored_gamma(updates, malicious, weights, mean, p, probe, self.refine_steps)
        ctx.extra["adaptive_gamma"] = gamma
        return mean + gamma * p


def tailored_gamma(
    updates: np.ndarray,
    malicious: np.ndarray,
    weights: np.ndarray,
    mean: np.ndarray,
    p: np.ndarray,
    probe: Probe,
    refine_steps: int = 6,
) -> float:
    """The ``gamma`` in the search range whose round moves ``probe``'s output farthest from ``mean``."""
    scale = largest_gamma(reference_rows(updates, malicious), p, "min_max")
    if scale <= 0:
        scale = 1.0
    trial = np.array(updates, dtype=np.float32, copy=True)
    cache: dict[float, float] = {}

    def deviation(gamma: float) -> float:
        if gamma not in cache:
            trial[malicious] = (mean + gamma * p).astype(np.float32)
            try:
                out = np.asarray(probe(trial, weights), dtype=np.float64)
                cache[gamma] = float(np.linalg.norm(out - mean)) if np.isfinite(out).all() else -1.0
            except ValueError:  # the rule refuses this round (e.g. it flags every update): no gain
                cache[gamma] = -1.0
        return cache[gamma]

    grid = [scale * 2.0**k for k in range(-3, 11)]
    scores = [deviation(g) for g in grid]
    best = int(np.argmax(scores))
    lo = grid[best - 1] if best > 0 else 0.0
    hi = grid[best + 1] if best + 1 < len(grid) else grid[best]
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    for _ in range(refine_steps):
        if deviation(a) >= deviation(b):
            hi, b = b, a
            a = hi - _GOLDEN * (hi - lo)
        else:
            lo, a = a, b
            b = lo + _GOLDEN * (hi - lo)
    return max(cache, key=lambda g: cache[g])
