"""DP-FedAvg noise (McMahan et al. 2018) and adaptive clipping (Andrew et al. 2021), against closed forms."""

import math

import numpy as np
import pytest
from scipy import stats

from deai.privacy.dp.mechanisms import (
    AdaptiveClipping,
    CentralGaussianNoise,
    DistributedGaussianNoise,
    dp_fedavg_aggregate,
)
from deai.transforms import ClipByNorm, RoundContext, chain


def ctx(round_: int = 3, party_ids=(0,), seed: int = 11) -> RoundContext:
    return RoundContext(seed=seed, round=round_, party_ids=np.asarray(party_ids, dtype=np.int64))


def rows_with_norms(norms: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    directions = rng.normal(size=(len(norms), dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return (directions * np.asarray(norms)[:, None]).astype(np.float32)


# ---------------------------------------------------------------------------- central
def test_central_noise_has_std_z_c_over_expected_parties():
    z, clip, expected = 1.3, 2.0, 40.0
    noisy = CentralGaussianNoise(z, clip, expected)(np.zeros(200_000, np.float32), ctx())
    assert noisy.dtype == np.float32
    assert np.std(noisy) == pytest.approx(z * clip / expected, rel=0.01)
    assert abs(np.mean(noisy)) < 5 * z * clip / expected / math.sqrt(noisy.size)
    assert stats.kstest(noisy / (z * clip / expected), "norm").pvalue > 1e-4


def test_central_noise_is_keyed_by_seed_and_round_in_simulation_mode_only():
    mechanism = CentralGaussianNoise(1.0, 1.0, 10, simulation=True)
    zeros = np.zeros(64, np.float32)
    np.testing.assert_array_equal(mechanism(zeros, ctx(round_=4)), mechanism(zeros, ctx(round_=4)))
    assert not np.array_equal(mechanism(zeros, ctx(round_=4)), mechanism(zeros, ctx(round_=5)))
    assert not np.array_equal(mechanism(zeros, ctx(seed=1)), mechanism(zeros, ctx(seed=2)))
    secure = CentralGaussianNoise(1.0, 1.0, 10)  # the default: fresh OS entropy every call
    assert not np.array_equal(secure(zeros, ctx(round_=4)), secure(zeros, ctx(round_=4)))


def test_dp_fedavg_divides_by_the_expected_not_the_reported_count():
    rng = np.random.default_rng(0)
    updates, _ = ClipByNorm(1.0).apply(rng.normal(size=(7, 5)).astype(np.float32), None, ctx())
    out = dp_fedavg_aggregate(
        updates, expected_parties=10, noise_multiplier=0.0, clip_norm=1.0, seed=0, round=1
    )
    np.testing.assert_allclose(out, updates.sum(axis=0, dtype=np.float64) / 10, rtol=1e-6)


def test_dp_fedavg_noise_matches_central_noise():
    rng = np.random.default_rng(1)
    updates, _ = ClipByNorm(0.5).apply(rng.normal(size=(4, 1000)).astype(np.float32), None, ctx())
    out = dp_fedavg_aggregate(updates, 8, 1.5, 0.5, seed=11, round=3, simulation=True)
    central = CentralGaussianNoise(1.5, 0.5, 8, simulation=True)
    expected = central(updates.sum(axis=0, dtype=np.float64) / 8, ctx(seed=11, round_=3))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_dp_fedavg_rejects_unclipped_updates():
    with pytest.raises(ValueError, match="clip_norm"):
        dp_fedavg_aggregate(np.full((2, 4), 3.0, np.float32), 2, 1.0, 1.0, seed=0, round=0)


@pytest.mark.parametrize(
    ("args", "name"),
    [((-1.0, 1.0, 10), "noise_multiplier"), ((1.0, 0.0, 10), "clip_norm"), ((1.0, 1.0, 0), "expected")],
)
def test_central_noise_validates_its_parameters(args, name):
    with pytest.raises(ValueError, match=name):
        CentralGaussianNoise(*args)


# ---------------------------------------------------------------------------- distributed
def test_distributed_noise_sums_to_variance_z_c_squared():
    z, clip, n, dim = 1.2, 0.7, 10, 100_000
    transform = DistributedGaussianNoise(z, clip, n)
    noisy, _ = transform.apply(np.zeros((n, dim), np.float32), transform.init(dim), ctx(party_ids=range(n)))
    assert np.var(noisy[0]) == pytest.approx((z * clip) ** 2 / n, rel=0.03)
    assert np.var(noisy.sum(axis=0, dtype=np.float64)) == pytest.approx((z * clip) ** 2, rel=0.03)


def test_distributed_noise_with_dropouts_has_the_stated_effective_multiplier():
    z, clip, n, survivors, dim = 1.0, 1.0, 10, 4, 100_000
    transform = DistributedGaussianNoise(z, clip, n)
    noisy, _ = transform.apply(np.zeros((survivors, dim), np.float32), None, ctx(party_ids=range(survivors)))
    z_eff = transform.effective_noise_multiplier(survivors)
    assert z_eff == pytest.approx(z * math.sqrt(survivors / n))
    assert np.var(noisy.sum(axis=0, dtype=np.float64)) == pytest.approx((z_eff * clip) ** 2, rel=0.03)


def test_a_partys_noise_does_not_depend_on_who_else_was_sampled():
    transform = DistributedGaussianNoise(1.0, 1.0, 5, simulation=True)
    alone, _ = transform.apply(np.zeros((1, 32), np.float32), None, ctx(party_ids=[7]))
    crowd, _ = transform.apply(np.zeros((3, 32), np.float32), None, ctx(party_ids=[3, 7, 9]))
    np.testing.assert_array_equal(alone[0], crowd[1])


def test_distributed_noise_chains_after_clipping():
    rng = np.random.default_rng(2)
    updates = rng.normal(size=(5, 16)).astype(np.float32) * 10
    pipeline = chain(ClipByNorm(1.0), DistributedGaussianNoise(0.0, 1.0, 5))
    out, _ = pipeline.apply(updates, pipeline.init(16), ctx(party_ids=range(5)))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------------------- adaptive clipping
def test_noiseless_adaptive_step_equals_hand_computation():
    rng = np.random.default_rng(3)
    updates = rows_with_norms(np.array([0.5, 0.9, 1.0, 1.5, 3.0]), 6, rng)
    clipping = AdaptiveClipping(1.0, noise_multiplier=0.0, expected_parties=5, clipped_count_stddev=0.0)
    aggregate, state = clipping(updates, clipping.init(), ctx())
    # 3 of 5 norms are <= C = 1, so b~ = 0.6 and C <- 1 * exp(-0.2 (0.6 - 0.5)).
    assert float(state["clip_norm"]) == pytest.approx(math.exp(-0.2 * 0.1), rel=1e-12)
    clipped = updates * np.minimum(1.0, 1.0 / np.linalg.norm(updates, axis=1))[:, None]
    np.testing.assert_allclose(aggregate, clipped.sum(axis=0) / 5, rtol=1e-5, atol=1e-7)


def test_count_is_centred_so_missing_reports_move_b_toward_one_half():
    # Andrew et al. report b_i - 1/2 (sensitivity 1/2); with 4 of m = 8 reports, 3 unclipped:
    # b~ = (3 - 4 / 2) / 8 + 1/2 = 0.625.
    clipping = AdaptiveClipping(1.0, 0.0, expected_parties=8, target_quantile=0.3, clipped_count_stddev=0.0)
    assert clipping.noisy_unclipped_fraction(np.array([1, 1, 1, 0]), ctx()) == pytest.approx(0.625)
    state = clipping.next_state(clipping.init(), np.array([1, 1, 1, 0]), ctx())
    assert float(state["clip_norm"]) == pytest.approx(math.exp(-0.2 * (0.625 - 0.3)))


@pytest.mark.parametrize(("quantile", "start"), [(0.5, 0.1), (0.8, 10.0)])
def test_clip_norm_converges_to_the_target_quantile_of_the_norms(quantile, start):
    sigma, m = 0.5, 200
    truth = math.exp(sigma * stats.norm.ppf(quantile))  # quantile of lognormal(0, sigma) norms
    clipping = AdaptiveClipping(
        start, 0.0, expected_parties=m, target_quantile=quantile, clipped_count_stddev=0.0
    )
    rng = np.random.default_rng(4)
    state, history = clipping.init(), []
    for round_ in range(300):
        updates = rows_with_norms(rng.lognormal(0.0, sigma, size=m), 3, rng)
        _, state = clipping(updates, state, ctx(round_=round_, party_ids=range(m)))
        history.append(float(state["clip_norm"]))
    assert abs(math.log(history[50]) - math.log(truth)) < abs(math.log(start) - math.log(truth))
    assert np.mean(history[-100:]) == pytest.approx(truth, rel=0.05)


def test_update_noise_multiplier_leaves_the_round_at_z():
    clipping = AdaptiveClipping(1.0, noise_multiplier=1.1, expected_parties=100)
    sigma_b = clipping.count_stddev
    assert sigma_b == 100 / 20
    z_delta = clipping.update_noise_multiplier
    assert z_delta == pytest.approx((1.1**-2 - (2 * sigma_b) ** -2) ** -0.5)
    assert (z_delta**-2 + (2 * sigma_b) ** -2) ** -0.5 == pytest.approx(1.1, rel=1e-12)
    assert z_delta > 1.1


def test_adaptive_noise_on_the_average_uses_z_delta():
    m, dim = 50, 100_000
    clipping = AdaptiveClipping(2.0, noise_multiplier=1.0, expected_parties=m)
    aggregate, state = clipping(np.zeros((m, dim), np.float32), clipping.init(), ctx(party_ids=range(m)))
    assert np.std(aggregate) == pytest.approx(clipping.update_noise_multiplier * 2.0 / m, rel=0.02)
    assert float(state["clip_norm"]) != 2.0


def test_adaptive_clipping_needs_count_noise_above_half_z():
    with pytest.raises(ValueError, match="clipped_count_stddev"):
        AdaptiveClipping(1.0, noise_multiplier=2.0, expected_parties=100, clipped_count_stddev=1.0)
    with pytest.raises(ValueError, match="target_quantile"):
        AdaptiveClipping(1.0, 1.0, 100, target_quantile=1.0)
