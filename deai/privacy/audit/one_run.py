"""One-run privacy auditing (Steinke, Nasr and Jagielski 2023, "Privacy Auditing with One (1) Training Run").

``m`` canaries are each included in training independently with probability 1/2. After one run the
auditor ranks them by a score, guesses "in" for the ``k_in`` highest and "out" for the ``k_out`` lowest,
and counts correct guesses ``v`` out of ``r = k_in + k_out``. Under (eps, delta)-DP (their Theorem 3.1
and Proposition 5.2), ``P[V >= v] <= P[Binom(r, e^eps / (1 + e^eps)) >= v] + 2 m delta * alpha``, with
``alpha`` the largest ``(P[Binom >= v - i] - P[Binom >= v]) / i`` over ``1 <= i <= v``. The empirical
epsilon is the largest eps whose claim these counts reject at significance ``beta``: a lower bound on
the true epsilon, holding with probability ``1 - beta``.

The bound saturates: even with every guess correct, ``r`` guesses certify at most the eps where
``P[Binom(r, p) = r] = beta``, about ``log(r / log(1/beta))`` (:func:`audit_ceiling`); 200 guesses reach
4.2, 1,000 reach 5.8. A claim above the ceiling cannot be rejected by this audit, so choose enough
canaries for the eps being checked, and report the ceiling beside every result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import binom

from deai.attacks.canary import canary_included, canary_scores


def one_run_p_value(canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """The probability, under an (epsilon, delta)-DP mechanism, of at least ``correct`` correct guesses."""
    p = float(expit(epsilon))
    beta = float(binom.sf(correct - 1, guesses, p))
    if delta == 0 or correct == 0:
        return beta
    i = np.arange(1, correct + 1)
    alpha = float(np.max((binom.sf(correct - i - 1, guesses, p) - beta) / i, initial=0.0))
    return min(beta + alpha * delta * 2 * canaries, 1.0)


def empirical_epsilon(
    canaries: int, guesses: int, correct: int, delta: float, significance: float = 0.05
) -> float:
    """The largest epsilon that ``correct`` of ``guesses`` rejects at ``significance`` (0 when none)."""
    if not 0 < significance < 1:
        raise ValueError(f"significance must be in (0, 1); got {significance!r}")
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError(f"need 0 <= correct <= guesses <= canaries; got {correct}, {guesses}, {canaries}")

    def rejects(eps: float) -> float:  # > 0 while the (eps, delta) claim is rejected
        return significance - one_run_p_value(canaries, guesses, correct, eps, delta)

    if rejects(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while rejects(hi) > 0:
        lo, hi = hi, 2 * hi
        if hi > 1e3:
            return math.inf
    return float(brentq(rejects, lo, hi, xtol=1e-6))


def audit_ceiling(canaries: int, guesses: int, delta: float, significance: float = 0.05) -> float:
    """The most this audit can ever certify: the empirical epsilon when every guess is right."""
    return empirical_epsilon(canaries, guesses, guesses, delta, significance)


@dataclass(frozen=True)
class OneRunAudit:
    """The outcome of one audit: guesses, correct ones, the certified lower bound and the ceiling."""

    canaries: int
    guesses: int
    correct: int
    epsilon_lower_bound: float
    ceiling: float


def audit_scores(
    scores: np.ndarray, included: np.ndarray, guesses: int, delta: float, significance: float = 0.05
) -> OneRunAudit:
    """Guess the ``guesses / 2`` highest scores in and as many lowest out; certify what the count allows.

    ``guesses`` is fixed before looking at the scores (choosing it after would need a correction).
    """
    s, inc = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    if s.shape != inc.shape or s.ndim != 1:
        raise ValueError("scores and included must be 1-D arrays of the same length")
    m, half = len(s), int(guesses) // 2
    if not 1 <= half <= m // 2:
        raise ValueError(f"guesses must be between 2 and the number of canaries ({m}); got {guesses}")
    order = np.argsort(s, kind="stable")
    correct = int(inc[order[-half:]].sum() + (~inc[order[:half]]).sum())
    return OneRunAudit(
        canaries=m,
        guesses=2 * half,
        correct=correct,
        epsilon_lower_bound=empirical_epsilon(m, 2 * half, correct, delta, significance),
        ceiling=audit_ceiling(m, 2 * half, delta, significance),
    )


def audit_canaries(
    delta_params: np.ndarray,
    audit_seed: int,
    canary_ids: np.ndarray,
    guesses: int,
    delta: float,
    significance: float = 0.05,
) -> OneRunAudit:
    """The one-run audit of a run with canary clients (:class:`deai.attacks.canary.Canary`).

    ``delta_params`` is the model's total change over the run; ``canary_ids`` the canaries' party ids.
    """
    scores = canary_scores(delta_params, audit_seed, canary_ids)
    return audit_scores(scores, canary_included(audit_seed, canary_ids), guesses, delta, significance)
