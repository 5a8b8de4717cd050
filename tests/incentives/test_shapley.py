"""Shapley estimators against the definition: brute force over every join order, and closed forms."""

from itertools import permutations
from math import factorial

import numpy as np
import pytest
from scipy.stats import spearmanr

from deai.incentives.shapley import Coalitions, exact_shapley, gtg_shapley, leave_one_out, tmc_shapley


def brute_force(n, u):
    """The definition, independently: average each party's marginal gain over all n! join orders."""
    phi = np.zeros(n)
    for order in permutations(range(n)):
        mask = np.zeros(n, dtype=bool)
        before = u(mask)
        for i in order:
            mask = mask.copy()
            mask[i] = True
            after = u(mask)
            phi[i] += after - before
            before = after
    return phi / factorial(n)


def concave_game(n, seed):
    """u(S) = sqrt(sum of S's sizes) + interaction: a diminishing-returns game like pooled data."""
    rng = np.random.default_rng(seed)
    sizes = rng.uniform(0.1, 3.0, n)
    pair = rng.uniform(-0.2, 0.2, (n, n))

    def u(mask):
        m = mask.astype(float)
        return float(np.sqrt(sizes @ m) + 0.1 * m @ pair @ m)

    return u


@pytest.mark.parametrize("seed", range(5))
def test_exact_shapley_is_the_definition(seed):
    n = 6
    u = concave_game(n, seed)
    phi = exact_shapley(Coalitions(n, u))
    np.testing.assert_allclose(phi, brute_force(n, u), atol=1e-12)
    assert phi.sum() == pytest.approx(u(np.ones(n, bool)) - u(np.zeros(n, bool)))  # efficiency


def test_closed_forms_additive_game_and_glove_game():
    a = np.array([0.5, -1.0, 2.0, 0.0])
    additive = Coalitions(4, lambda m: float(a @ m))
    np.testing.assert_allclose(exact_shapley(additive), a)  # each party is worth its own term
    np.testing.assert_allclose(leave_one_out(additive), a)
    # glove game: party 0 has a left glove, 1 and 2 right ones; a pair is worth 1. phi = (2/3, 1/6, 1/6)
    glove = Coalitions(3, lambda m: float(m[0] and (m[1] or m[2])))
    np.testing.assert_allclose(exact_shapley(glove), [2 / 3, 1 / 6, 1 / 6])


def test_leave_one_out_gives_duplicates_nothing_while_shapley_splits_their_credit():
    # parties 0 and 1 hold the same data: either one brings it; party 2 brings something else
    dup = Coalitions(3, lambda m: float(m[0] or m[1]) + 0.5 * float(m[2]))
    np.testing.assert_allclose(leave_one_out(dup), [0.0, 0.0, 0.5])
    np.testing.assert_allclose(exact_shapley(dup), [0.5, 0.5, 0.5])


@pytest.mark.parametrize("estimator", [gtg_shapley, tmc_shapley])
@pytest.mark.parametrize("seed", range(6))
def test_sampled_estimates_are_within_ten_percent_of_the_range_and_rank_alike(estimator, seed):
    n = 8
    u = concave_game(n, 100 + seed)
    exact = exact_shapley(Coalitions(n, u))
    game = Coalitions(n, u)
    estimate = estimator(game, np.random.default_rng(seed))
    spread = exact.max() - exact.min()
    assert np.max(np.abs(estimate - exact)) <= 0.10 * spread
    assert spearmanr(estimate, exact).statistic >= 0.9


def test_gtg_values_a_round_that_changed_nothing_at_zero_without_sampling():
    flat = Coalitions(5, lambda m: 1.0 + 1e-6 * m.sum())
    assert np.all(gtg_shapley(flat, np.random.default_rng(0), tolerance=1e-3) == 0)
    assert flat.evaluations == 2  # the full and the empty coalition, nothing else


def test_truncation_saves_evaluations_and_the_cache_counts_them():
    n = 10
    sizes = np.random.default_rng(7).uniform(0.5, 2.0, n)

    def u(mask):  # saturating: a few parties' data already give most of the model
        return float(1 - np.exp(-sizes @ mask))

    full, trunc = Coalitions(n, u), Coalitions(n, u)
    tmc_shapley(full, np.random.default_rng(0), tolerance=0.0, max_orders=50, converge=0.0)
    tmc_shapley(trunc, np.random.default_rng(0), tolerance=0.01, max_orders=50, converge=0.0)
    assert trunc.evaluations < full.evaluations <= 2**n


def test_bad_games_are_refused_by_name():
    with pytest.raises(ValueError, match="at least one party"):
        Coalitions(0, lambda m: 0.0)
    with pytest.raises(ValueError, match="use gtg or tmc"):
        exact_shapley(Coalitions(17, lambda m: 0.0))
