import itertools

import numpy as np
import pytest
from scipy import stats

from deai.privacy.secagg import shamir


def test_every_t_subset_of_shares_reconstructs_the_secret():
    secret = shamir.random_field_elements((8,))
    xs = np.arange(1, 8)
    shares = shamir.split(secret, 4, xs)
    for subset in itertools.combinations(range(7), 4):
        idx = list(subset)
        np.testing.assert_array_equal(shamir.reconstruct(xs[idx], shares[idx]), secret)


def test_t_minus_one_shares_are_uniform_whatever_the_secret():
    # Perfect secrecy: the joint distribution of any t-1 shares does not depend on the secret.
    # Share 20,000 copies of two very different secrets and compare the first t-1 shares.
    m, t, xs = 20_000, 3, np.arange(1, 6)
    zeros = shamir.split(np.zeros(m, dtype=np.uint64), t, xs)[: t - 1]
    big = shamir.split(np.full(m, shamir.PRIME - 1, dtype=np.uint64), t, xs)[: t - 1]
    for shares in (zeros, big):
        buckets = (shares.ravel() * 64 // shamir.PRIME).astype(np.int64)
        assert stats.chisquare(np.bincount(buckets, minlength=64)).pvalue > 1e-3
    assert stats.ks_2samp(zeros.ravel(), big.ravel()).pvalue > 1e-3


def test_t_minus_one_shares_do_not_reconstruct():
    secret = shamir.random_field_elements((1000,))
    xs = np.arange(1, 11)
    shares = shamir.split(secret, 6, xs)
    guess = shamir.reconstruct(xs[:5], shares[:5])
    assert np.mean(guess == secret) < 0.01


def test_every_candidate_secret_is_consistent_with_t_minus_one_shares():
    # For t - 1 shares and ANY candidate secret s', the t points {(0, s')} + shares determine a
    # polynomial of degree t - 1 that explains the shares: they rule out no secret.
    t, xs = 4, np.array([2, 5, 9], dtype=np.uint64)
    shares = shamir.split(np.array([123], dtype=np.uint64), t, np.arange(1, 10))[[1, 4, 8]]
    probe_x = np.array([7], dtype=np.uint64)
    for candidate in [0, 123, 999_999, shamir.PRIME - 1]:
        points = np.concatenate([np.array([0], dtype=np.uint64), xs])
        values = np.concatenate([np.array([[candidate]], dtype=np.uint64), shares])
        # Interpolate through the t points, then check the polynomial passes the shares again
        # by reconstructing "the secret" from the shares plus the implied value at x = 7.
        at_probe = _evaluate_interpolant(points, values[:, 0], int(probe_x[0]))
        recovered = shamir.reconstruct(
            np.concatenate([xs, probe_x]), np.concatenate([shares, [[at_probe]]]).astype(np.uint64)
        )
        assert int(recovered[0]) == candidate


def test_bytes_roundtrip_and_inconsistent_shares_are_detected():
    data = bytes(range(32))
    assert shamir.field_to_bytes(shamir.bytes_to_field(data)) == data
    with pytest.raises(ValueError, match="inconsistent"):
        shamir.field_to_bytes(np.array([1 << 20], dtype=np.uint64))


def test_invalid_points_and_thresholds_are_refused():
    with pytest.raises(ValueError, match="reveal the secret"):
        shamir.split(np.zeros(2, dtype=np.uint64), 2, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="distinct"):
        shamir.split(np.zeros(2, dtype=np.uint64), 2, np.array([1, 1, 2]))
    with pytest.raises(ValueError, match="threshold"):
        shamir.split(np.zeros(2, dtype=np.uint64), 4, np.array([1, 2, 3]))


def _evaluate_interpolant(xs: np.ndarray, ys: np.ndarray, x: int) -> int:
    """Lagrange interpolation at x with Python integers (an independent implementation)."""
    p, total = shamir.PRIME, 0
    for j, (xj, yj) in enumerate(zip(xs.tolist(), ys.tolist(), strict=True)):
        num, den = 1, 1
        for i, xi in enumerate(xs.tolist()):
            if i != j:
                num = num * (x - xi) % p
                den = den * (xj - xi) % p
        total = (total + yj * num * pow(den, -1, p)) % p
    return total
