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
