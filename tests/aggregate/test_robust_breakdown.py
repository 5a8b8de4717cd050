"""With f of n updates moved 1e6 away, robust rules stay among the honest updates; the plain mean does not."""

import numpy as np
import pytest

from deai.aggregate.base import RoundContext
from deai.aggregate.mean import WeightedMean
from deai.aggregate.robust import (
    Bulyan,
    CenteredClipping,
    CoordinateMedian,
    GeometricMedian,
    Krum,
    MultiKrum,
    TrimmedMean,
)

N, F, DIM = 23, 5, 20  # n = 4f + 3, the smallest round Bulyan accepts


def _attacked_round(seed):
    rng = np.random.default_rng(seed)
    honest_mean = rng.standard_normal(DIM) * 0.7
    honest = honest_mean + rng.standard_normal((N - F, DIM))
    direction = rng.standard_normal(DIM)
    byzantine = honest_mean + 1e6 * direction / np.linalg.norm(direction) + rng.standard_normal((F, DIM))
    updates = np.vstack([byzantine, honest]).astype(np.float32)
    ctx = RoundContext(round=1, party_ids=np.arange(N), steps=np.ones(N, np.int64))
    return updates, np.full(N, 50.0), ctx, honest.mean(axis=0), honest


RULES = [
    CoordinateMedian(),
    TrimmedMean(trim_fraction=F / N),
    Krum(num_byzantine=F),
    MultiKrum(num_byzantine=F),
    Bulyan(num_byzantine=F),
    GeometricMedian(),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_robust_rule_stays_within_the_honest_spread(rule, seed):
    updates, weights, ctx, honest_mean, honest = _attacked_round(seed)
    spread = np.linalg.norm(honest - honest_mean, axis=1).max()
    assert np.linalg.norm(rule(updates, weights, ctx) - honest_mean) < spread


@pytest.mark.parametrize("seed", [0, 1])
def test_centered_clipping_stays_within_the_honest_spread(seed):
    updates, weights, ctx, honest_mean, honest = _attacked_round(seed)
    spread = np.linalg.norm(honest - honest_mean, axis=1).max()
    rule = CenteredClipping(clip_radius=2.0, n_iter=5)
    for _ in range(4):  # from the zero center, a few rounds of history reach the honest cluster
        got = rule(updates, weights, ctx)
    assert np.linalg.norm(got - honest_mean) < spread


def test_plain_mean_is_dragged_away():
    updates, weights, ctx, honest_mean, _ = _attacked_round(0)
    assert np.linalg.norm(WeightedMean()(updates, weights, ctx) - honest_mean) > 1e5
