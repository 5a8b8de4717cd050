"""The RFA geometric median matches known answers and a general-purpose minimizer of sum_i w_i |x_i - z|."""

import numpy as np
import pytest
from scipy.optimize import minimize

from deai.aggregate.base import RoundContext
from deai.aggregate.robust import GeometricMedian


def _ctx(parties):
    return RoundContext(round=1, party_ids=np.arange(parties), steps=np.ones(parties, np.int64))


def _objective(z, x, w):
    return float(w @ np.linalg.norm(x - z, axis=1))


def test_collinear_points_give_the_one_dimensional_median():
    direction = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    offset = np.array([3.0, 1.0, -1.0])
    t = np.array([0.0, 1.0, 2.0, 3.0, 100.0])
    points = (offset + t[:, None] * direction).astype(np.float32)
    got = GeometricMedian(tolerance=1e-12, max_iter=1000)(points, np.ones(5), _ctx(5))
    np.testing.assert_allclose(got, offset + 2.0 * direction, atol=1e-3)


def test_a_point_holding_half_the_weight_is_the_median():
    # With w_0 >= sum of the other weights, the weighted geometric median is x_0 (optimality condition).
    points = np.array([[1.0, 1.0], [4.0, -2.0], [-3.0, 5.0], [0.0, -6.0]], dtype=np.float32)
    weights = np.array([30.0, 10.0, 10.0, 10.0])
    got = GeometricMedian(tolerance=1e-12, max_iter=1000)(points, weights, _ctx(4))
    np.testing.assert_allclose(got, points[0], atol=1e-3)


def test_symmetric_configuration_gives_its_centre():
    centre = np.array([2.0, -1.0, 0.5])
    arms = np.vstack([np.eye(3) * [1, 2, 3], -np.eye(3) * [1, 2, 3]])
    points = (centre + arms).astype(np.float32)
    weights = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(GeometricMedian()(points, weights, _ctx(6)), centre, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_median_matches_scipy_minimize(seed):
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((9, 4)).astype(np.float32) * rng.uniform(0.5, 4, (9, 1)).astype(np.float32)
    weights = rng.uniform(1, 10, 9)
    x, w = points.astype(np.float64), weights / weights.sum()

    def grad(z, x, w):
        diff = z - x
        return w @ (diff / np.linalg.norm(diff, axis=1, keepdims=True))

    ref = minimize(_objective, x.mean(axis=0), args=(x, w), jac=grad, method="BFGS", options={"gtol": 1e-10})
    rule = GeometricMedian(tolerance=1e-12, max_iter=1000)
    ctx = _ctx(9)
    got = rule(points, weights, ctx)
    np.testing.assert_allclose(got, ref.x, atol=1e-4)
    assert _objective(got, x, w) <= ref.fun * (1 + 1e-6)
    np.testing.assert_allclose(ctx.signals["geometric_median_weight"] @ x, got, atol=1e-5)
