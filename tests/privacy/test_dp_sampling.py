"""The DP samplers against independent truth: the discrete Gaussian's closed-form law, OpenDP's exact
sampler, and the lattice release's promises (lattice points, std, keyed only in simulation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from deai.privacy.dp.sampling import (
    KeyedBits,
    SystemBits,
    bernoulli,
    discrete_gaussian,
    lattice_gaussian,
    lattice_step,
    noise_bits,
)


def discrete_gaussian_pmf(sigma: float, support: np.ndarray) -> np.ndarray:
    """P(x) = exp(-x^2 / 2 sigma^2) / sum_z exp(-z^2 / 2 sigma^2), the normaliser summed to 60 sigma."""
    z = np.arange(-int(60 * sigma) - 60, int(60 * sigma) + 61)
    norm = np.exp(-(z.astype(float) ** 2) / (2 * sigma**2)).sum()
    return np.exp(-(support.astype(float) ** 2) / (2 * sigma**2)) / norm


@pytest.mark.parametrize("sigma", [0.6, 2.5, 17.0])
@pytest.mark.parametrize("bits", [SystemBits(), KeyedBits(3, 1)], ids=["os", "keyed"])
def test_discrete_gaussian_follows_its_closed_form_law(sigma, bits):
    draws = discrete_gaussian(sigma, np.arange(200), 1000, bits).ravel()
    lo, hi = int(-3 * sigma) - 1, int(3 * sigma) + 1  # every cell expects dozens of draws or more
    support = np.arange(lo, hi + 1)
    expected = discrete_gaussian_pmf(sigma, support) * draws.size
    observed = np.array([(draws == x).sum() for x in support])
    tails = draws.size - observed.sum()  # |x| beyond 3 sigma, pooled into one cell
    p = stats.chisquare(np.append(observed, tails), np.append(expected, draws.size - expected.sum())).pvalue
    assert p > 1e-4


def test_discrete_gaussian_matches_opendps_exact_sampler():
    """Two-sample test against OpenDP's vetted sampler (exact rational arithmetic) at the same scale."""
    dp = pytest.importorskip("opendp.prelude")
    dp.enable_features("contrib")
    sigma, n = 6.0, 40_000
    space = dp.vector_domain(dp.atom_domain(T=int), size=n), dp.l2_distance(T=float)
    reference = np.array(dp.m.make_gaussian(*space, scale=sigma)([0] * n))
    ours = discrete_gaussian(sigma, np.arange(40), 1000, SystemBits()).ravel()
    assert stats.ks_2samp(ours, reference).pvalue > 1e-4
    assert stats.cramervonmises_2samp(ours, reference).pvalue > 1e-4
    # and the test can tell: a scale 10% off is caught
    off = discrete_gaussian(sigma * 1.1, np.arange(40), 1000, SystemBits()).ravel()
    assert stats.cramervonmises_2samp(off, reference).pvalue < 1e-6


def test_keyed_draws_depend_only_on_their_row_and_os_draws_never_repeat():
    a = discrete_gaussian(4.0, np.array([5, 9, 11]), 64, KeyedBits(0, 2))
    b = discrete_gaussian(4.0, np.array([9]), 64, KeyedBits(0, 2))
    np.testing.assert_array_equal(a[1], b[0])
    assert not np.array_equal(a, discrete_gaussian(4.0, np.array([5, 9, 11]), 64, KeyedBits(0, 3)))
    first = discrete_gaussian(4.0, np.array([5, 9, 11]), 64, SystemBits())
    assert not np.array_equal(first, discrete_gaussian(4.0, np.array([5, 9, 11]), 64, SystemBits()))
    assert isinstance(noise_bits(False, 0, 1), SystemBits) and isinstance(noise_bits(True, 0, 1), KeyedBits)


def test_lattice_release_lands_on_lattice_points_with_the_promised_std():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2000)) * 0.3
    z, sensitivity = 1.3, 0.05
    out = lattice_gaussian(x, z, sensitivity, np.arange(8), SystemBits())
    g = lattice_step(z * sensitivity * (1 + 1e-9))
    assert np.all(np.mod(out / g, 1.0) == 0)  # every output is a multiple of g: no low bits of x survive
    assert (out - x).std() == pytest.approx(z * sensitivity, rel=0.02)
    # the snapping slack is accounted by extra noise, and it is tiny
    assert 2 * g * math.sqrt(2000) < 1e-9 * sensitivity


def test_lattice_outputs_do_not_reveal_the_inputs_low_bits():
    """Mironov's attack on float noise: x + noise rounded to floats reaches a set that depends on x. On the
    lattice, the outputs for two nearby inputs are the same lattice points (a shared support)."""
    x0, x1 = np.full((1, 4000), 0.1), np.full((1, 4000), 0.1 + 1e-12)
    g = lattice_step(1.0)
    a = lattice_gaussian(x0, 1.0, 1.0, np.zeros(1, np.int64), SystemBits())
    b = lattice_gaussian(x1, 1.0, 1.0, np.zeros(1, np.int64), SystemBits())
    assert np.all(np.mod(a / g, 1.0) == 0) and np.all(np.mod(b / g, 1.0) == 0)


def test_bernoulli_sampling_rate_and_unpredictability():
    rows = np.arange(200_000)
    first = bernoulli(0.1, rows, SystemBits())
    assert first.mean() == pytest.approx(0.1, abs=0.003)
    assert not np.array_equal(first, bernoulli(0.1, rows, SystemBits()))


def test_bad_sigma_is_refused():
    for bad in (0.0, -1.0, math.inf, math.nan, 2.0**48):
        with pytest.raises(ValueError, match="sigma"):
            discrete_gaussian(bad, np.arange(2), 3, SystemBits())
