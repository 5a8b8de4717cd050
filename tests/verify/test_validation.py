import numpy as np

from deai.verify.validation import (
    DUPLICATE_SENDER,
    NON_FINITE,
    NORM_TOO_LARGE,
    STALE_ROUND,
    WRONG_DTYPE,
    WRONG_SHAPE,
    check_vector,
    validate_updates,
)


def _updates():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 4)).astype(np.float32)


def test_clean_round_is_all_accepted():
    res = validate_updates(_updates(), np.arange(6), np.full(6, 3), 3, max_norm=100.0)
    assert res.accepted.all() and res.reasons == {}


def test_each_bad_update_is_rejected_with_its_reason():
    u = _updates()
    u[1, 2] = np.nan
    u[2] *= 1000
    ids = np.array([0, 1, 2, 3, 0, 5])  # party 0 sends twice: second is a duplicate
    rounds = np.array([3, 3, 3, 2, 3, 3])  # party 3 answers for round 2
    res = validate_updates(u, ids, rounds, 3, max_norm=50.0)
    assert res.reasons == {1: NON_FINITE, 2: NORM_TOO_LARGE, 3: STALE_ROUND, 4: DUPLICATE_SENDER}
    np.testing.assert_array_equal(res.accepted, [True, False, False, False, False, True])
    assert res.counts() == {NON_FINITE: 1, NORM_TOO_LARGE: 1, STALE_ROUND: 1, DUPLICATE_SENDER: 1}


def test_wrong_dtype_matrix_is_rejected_whole():
    res = validate_updates(_updates().astype(np.float64), np.arange(6), np.full(6, 1), 1)
    assert not res.accepted.any() and set(res.reasons.values()) == {WRONG_DTYPE}


def test_single_vector_checks():
    assert check_vector(np.zeros(4, np.float32), 4) is None
    assert check_vector(np.zeros(5, np.float32), 4) == WRONG_SHAPE
    assert check_vector(np.zeros(4, np.float64), 4) == WRONG_DTYPE
    assert check_vector([0.0] * 4, 4) == WRONG_DTYPE
    assert check_vector(np.array([0, np.inf, 0, 0], np.float32), 4) == NON_FINITE


def test_finite_but_huge_update_is_rejected_as_overflow_with_a_float64_norm():
    """A row of 1e19s is finite, but its float32 squares overflow: no aggregator could digest it."""
    from deai.verify.validation import DIGESTIBLE_NORM, NORM_OVERFLOW, row_norms

    u = _updates()
    u[3] = 1e19  # finite float32 values
    with np.errstate(over="ignore"):
        assert np.isfinite(u).all() and not np.isfinite(np.linalg.norm(u[3]))  # float32 norm overflows
    norms = row_norms(u)
    np.testing.assert_allclose(norms[3], 2e19, rtol=1e-6)  # float64 norm does not
    res = validate_updates(u, np.arange(6), np.full(6, 1), 1)
    assert res.reasons == {3: NORM_OVERFLOW} and norms[3] > DIGESTIBLE_NORM
    np.testing.assert_allclose(res.norms[:3], np.linalg.norm(u[:3].astype(np.float64), axis=1))


def test_every_accepted_update_is_digestible_by_every_aggregator():
    """Updates just inside the bound go through every robust rule without error or non-finite output."""
    from deai.aggregate import AGGREGATORS, RoundContext, make_aggregator
    from deai.verify.validation import DIGESTIBLE_NORM

    rng = np.random.default_rng(1)
    u = rng.normal(size=(12, 64)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    u[:3] *= np.float32(0.99 * DIGESTIBLE_NORM)  # three attackers at the edge of what validation accepts
    res = validate_updates(u, np.arange(12), np.full(12, 1), 1)
    assert res.accepted.all()
    ctx = RoundContext(round=1, party_ids=np.arange(12), steps=np.ones(12, np.int64))
    ctx.signals["server_update"] = u[5]
    options = {
        "krum": {"num_byzantine": 3},
        "multi_krum": {"num_byzantine": 3},
        "bulyan": {"num_byzantine": 2},
        "centered_clipping": {"clip_radius": 1.0},
        "norm_bound": {"max_norm": 1.0},
    }
    for name in AGGREGATORS:
        out = make_aggregator(name, options.get(name, {}), num_parties=12, f_max=0.2)(u, np.ones(12), ctx)
        assert np.isfinite(out).all(), name
