"""ALIE, IPM, Min-Max and Min-Sum against independent truths: scipy's normal quantile, brute-force distances
(scipy's cdist) and the closed forms of the largest admissible gamma."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import norm

from deai.attacks import RoundContext, alie_z, largest_gamma, make_attack, perturbation_vector

P, DIM = 10, 30


def _round(malicious_rows=(0, 3, 7), scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    updates = scale * (rng.standard_normal(DIM) + 0.5 * rng.standard_normal((P, DIM)))
    malicious = np.zeros(P, dtype=bool)
    malicious[list(malicious_rows)] = True
    ctx = RoundContext(
        seed=0,
        round=1,
        party_ids=np.arange(P),
        malicious=malicious,
        global_params=np.zeros(DIM, np.float32),
        weights=np.ones(P),
        num_classes=10,
    )
    return updates.astype(np.float32), ctx


def _paper_z(n, f):
    s = int(np.floor(n / 2 + 1)) - f
    return norm.ppf((n - s) / n)


@pytest.mark.parametrize("n, f", [(10, 3), (50, 12), (20, 1), (7, 2)])
def test_alie_z_is_the_papers_normal_quantile(n, f):
    assert alie_z(n, f) == pytest.approx(_paper_z(n, f), rel=1e-12)


def test_alie_z_stays_finite_when_attackers_hold_a_majority():
    assert np.isfinite(alie_z(10, 6)) and alie_z(10, 6) == pytest.approx(norm.ppf(0.9))
    assert alie_z(1, 1) == 0.0


def test_alie_is_mean_minus_z_std_of_honest_rows():
    updates, ctx = _round()
    out = make_attack("alie").craft(updates, ctx)
    honest = updates[~ctx.malicious].astype(np.float64)
    z = _paper_z(P, int(ctx.malicious.sum()))
    mean = honest.sum(axis=0) / len(honest)
    std = np.sqrt(((honest - mean) ** 2).sum(axis=0) / len(honest))
    for row in out[ctx.malicious]:
        np.testing.assert_allclose(row, mean - z * std, rtol=1e-5, atol=1e-6)


def test_alie_uses_an_explicit_z():
    updates, ctx = _round()
    honest = updates[~ctx.malicious].astype(np.float64)
    out = make_attack("alie", z=1.5).craft(updates, ctx)
    np.testing.assert_allclose(out[0], honest.mean(0) - 1.5 * honest.std(0), rtol=1e-5, atol=1e-6)


def test_ipm_opposes_the_honest_mean():
    updates, ctx = _round()
    honest_mean = updates[~ctx.malicious].astype(np.float64).mean(0)
    out = make_attack("ipm", epsilon=0.1).craft(updates, ctx)
    assert (out[ctx.malicious] @ honest_mean < 0).all()
    np.testing.assert_allclose(out[ctx.malicious][1], -0.1 * honest_mean, rtol=1e-5)


def _min_max_truth(honest, p):
    """Largest gamma with max_i |mean + gamma p - x_i| <= max pairwise distance: per-row quadratic roots."""
    mean = honest.mean(0)
    bound = cdist(honest, honest, "sqeuclidean").max()
    a = honest - mean  # |gamma p - a_i|^2 <= bound  <=>  pp g^2 - 2 (p.a_i) g + |a_i|^2 - bound <= 0
    pp, pa, aa = p @ p, a @ p, (a * a).sum(1)
    roots = (pa + np.sqrt(pa**2 - pp * (aa - bound))) / pp
    return roots.min()


def _min_max_ok(m, honest, slack=1e-6):
    return cdist(m[None], honest).max() <= cdist(honest, honest).max() * (1 + slack)


def _min_sum_ok(m, honest, slack=1e-6):
    bound = cdist(honest, honest, "sqeuclidean").sum(1).max()
    return cdist(m[None], honest, "sqeuclidean").sum() <= bound * (1 + slack)


@pytest.mark.parametrize("perturbation", ["unit_vec", "std", "sign"])
@pytest.mark.parametrize("name, ok", [("min_max", _min_max_ok), ("min_sum", _min_sum_ok)])
def test_constraint_holds_and_is_tight(name, ok, perturbation):
    updates, ctx = _round()
    honest = updates[~ctx.malicious].astype(np.float64)
    out = make_attack(name, perturbation=perturbation).craft(updates, ctx)
    m = out[ctx.malicious].astype(np.float64)
    np.testing.assert_array_equal(m, np.broadcast_to(m[0], m.shape))  # all attackers send the same update

    mean, p = honest.mean(0), perturbation_vector(honest, perturbation)
    gamma = (m[0] - mean) @ p / (p @ p)
    np.testing.assert_allclose(m[0], mean + gamma * p, rtol=1e-5, atol=1e-6)  # it lies on the paper's line
    assert gamma > 0
    assert ok(m[0], honest)
    assert not ok(mean + 1.001 * gamma * p, honest, slack=0.0)
    assert ok(mean + 0.999 * gamma * p, honest, slack=0.0)


@pytest.mark.parametrize("perturbation", ["unit_vec", "std", "sign"])
def test_min_max_gamma_matches_closed_form(perturbation):
    updates, ctx = _round(seed=4)
    honest = updates[~ctx.malicious].astype(np.float64)
    p = perturbation_vector(honest, perturbation)
    got = largest_gamma(updates[~ctx.malicious], p, "min_max")
    assert got == pytest.approx(_min_max_truth(honest, p), rel=1e-4)


def test_min_sum_gamma_puts_the_update_as_far_as_the_farthest_honest_one():
    updates, ctx = _round(seed=5)
    honest = updates[~ctx.malicious].astype(np.float64)
    p = perturbation_vector(honest, "unit_vec")
    got = largest_gamma(updates[~ctx.malicious], p, "min_sum")
    assert got == pytest.approx(np.linalg.norm(honest - honest.mean(0), axis=1).max(), rel=1e-4)


@pytest.mark.parametrize("objective", ["min_max", "min_sum"])
def test_search_is_not_capped_by_gamma_init(objective):
    small, ctx = _round(scale=1.0)
    large, _ = _round(scale=1000.0)
    gammas = []
    for updates in (small, large):
        honest = updates[~ctx.malicious]
        gammas.append(largest_gamma(honest, perturbation_vector(honest, "unit_vec"), objective))
    assert gammas[1] > 100 * 2 * 10.0  # the paper's search stops at 2 * gamma_init
    assert gammas[1] == pytest.approx(1000.0 * gammas[0], rel=1e-4)


@pytest.mark.parametrize("name, ok", [("min_max", _min_max_ok), ("min_sum", _min_sum_ok)])
def test_all_malicious_round_uses_the_attackers_own_updates(name, ok):
    updates, ctx = _round(malicious_rows=range(P))
    out = make_attack(name).craft(updates, ctx)
    assert ok(out[0].astype(np.float64), updates.astype(np.float64))


def test_zero_perturbation_sends_the_mean():
    updates, ctx = _round()
    updates[:] = updates[0]  # identical rows: no std, so no direction to push along
    out = make_attack("min_max", perturbation="std").craft(updates, ctx)
    np.testing.assert_allclose(out, updates, rtol=1e-6)
