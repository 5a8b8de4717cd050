"""The accountant is dp_accounting, thinly wrapped: every epsilon is checked against direct library calls."""

import itertools
import math
import pickle

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp

from deai.privacy.dp.accountant import (
    DEFAULT_PLD_VALUE_DISCRETIZATION,
    BudgetExceededError,
    PrivacyAccountant,
    calibrate_noise_multiplier,
    compute_epsilon,
)

Z_GRID = (0.5, 1.0, 2.0, 4.0)
Q_GRID = (0.01, 0.1, 1.0)
STEPS_GRID = (1, 10, 100)
DELTA_GRID = (1e-5, 1e-6)


def reference_accountant(kind: str, interval: float = DEFAULT_PLD_VALUE_DISCRETIZATION):
    if kind == "rdp":
        return rdp.RdpAccountant()  # the library's default orders
    return pld.PLDAccountant(value_discretization_interval=interval)


def reference_event(z: float, q: float, steps: int) -> dp_accounting.DpEvent:
    # Without subsampling (q = 1) the mechanism is the plain Gaussian one.
    gaussian = dp_accounting.GaussianDpEvent(z)
    single = gaussian if q == 1 else dp_accounting.PoissonSampledDpEvent(q, gaussian)
    return dp_accounting.SelfComposedDpEvent(single, steps)


def assert_matches_reference(kind: str, grid, interval: float = DEFAULT_PLD_VALUE_DISCRETIZATION) -> None:
    for z, q, steps in grid:
        reference = reference_accountant(kind, interval).compose(reference_event(z, q, steps))
        for delta in DELTA_GRID:
            expected = reference.get_epsilon(delta)
            got = compute_epsilon(z, q, steps, delta, accountant=kind, pld_value_discretization=interval)
            assert got == pytest.approx(expected, rel=1e-6), (kind, z, q, steps, delta)


FULL_GRID = list(itertools.product(Z_GRID, Q_GRID, STEPS_GRID))


def test_rdp_epsilon_equals_direct_dp_accounting_on_the_grid():
    assert_matches_reference("rdp", FULL_GRID)


def test_pld_epsilon_equals_direct_dp_accounting_on_the_grid():
    # The whole grid at a coarse discretization (the wrapping is what is under test, and the finest
    # corners — z = 0.5, or q = 1 at 100 steps — cost seconds each at 1e-3), then the default
    # discretization wherever it is cheap.
    assert_matches_reference("pld", FULL_GRID, interval=1e-2)
    assert_matches_reference("pld", [(z, q, n) for z, q, n in FULL_GRID if z >= 1 and q < 1])


def test_no_subsampling_is_the_poisson_event_at_rate_one_under_rdp():
    poisson_one = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(1.0, dp_accounting.GaussianDpEvent(1.5)), 20
    )
    expected = rdp.RdpAccountant().compose(poisson_one).get_epsilon(1e-5)
    assert compute_epsilon(1.5, 1.0, 20, 1e-5, "rdp") == pytest.approx(expected, rel=1e-9)


def test_pld_is_tighter_than_rdp():
    for z, q, steps in [(1.0, 0.01, 100), (2.0, 0.1, 10), (1.0, 1.0, 10)]:
        assert compute_epsilon(z, q, steps, 1e-5, "pld") < compute_epsilon(z, q, steps, 1e-5, "rdp")


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_epsilon_decreases_with_noise_and_grows_with_steps(kind):
    by_z = [compute_epsilon(z, 0.02, 10, 1e-5, kind) for z in (0.7, 1.0, 2.0, 4.0, 8.0)]
    assert all(a > b for a, b in zip(by_z, by_z[1:], strict=False))
    by_steps = [compute_epsilon(1.0, 0.02, n, 1e-5, kind) for n in (1, 2, 10, 50, 100)]
    assert all(a < b for a, b in zip(by_steps, by_steps[1:], strict=False))


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_edge_cases(kind):
    assert compute_epsilon(0.0, 0.1, 10, 1e-5, kind) == math.inf  # no noise
    assert compute_epsilon(1.0, 0.1, 0, 1e-5, kind) == 0.0  # nothing released
    assert compute_epsilon(0.0, 0.0, 10, 1e-5, kind) == 0.0  # nobody ever sampled
    assert compute_epsilon(0.0, 0.5, 0, 1e-5, kind) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"noise_multiplier": -1.0}, "noise_multiplier"),
        ({"noise_multiplier": math.nan}, "noise_multiplier"),
        ({"sampling_rate": 1.5}, "sampling_rate"),
        ({"sampling_rate": -0.1}, "sampling_rate"),
        ({"steps": -1}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"accountant": "gdp"}, "accountant"),
        ({"pld_value_discretization": 0.0}, "pld_value_discretization"),
    ],
)
def test_invalid_arguments_raise_naming_the_argument(kwargs, name):
    args = {"noise_multiplier": 1.0, "sampling_rate": 0.1, "steps": 10, "delta": 1e-5} | kwargs
    with pytest.raises(ValueError, match=name):
        compute_epsilon(**args)


@pytest.mark.parametrize(
    ("target", "q", "steps", "kind"),
    [(1.0, 0.01, 1000, "rdp"), (2.0, 1.0, 10, "rdp"), (50.0, 0.01, 10, "rdp"), (3.0, 0.05, 100, "pld")],
)
def test_calibrated_noise_meets_the_target_within_one_percent(target, q, steps, kind):
    z = calibrate_noise_multiplier(target, q, steps, 1e-5, accountant=kind)
    eps = compute_epsilon(z, q, steps, 1e-5, accountant=kind)
    assert eps <= target
    assert eps >= 0.99 * target


def test_calibration_without_any_release_needs_no_noise():
    assert calibrate_noise_multiplier(1.0, 0.1, 0, 1e-5) == 0.0


def test_calibration_rejects_a_non_positive_target():
    with pytest.raises(ValueError, match="target_epsilon"):
        calibrate_noise_multiplier(0.0, 0.1, 10, 1e-5)


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_single_step_records_equal_one_composed_computation(kind):
    accountant = PrivacyAccountant(1e-5, accountant=kind)
    for _ in range(25):
        accountant.record(1.1, 0.05)
    assert accountant.epsilon() == compute_epsilon(1.1, 0.05, 25, 1e-5, kind)
    assert accountant.history == ((1.1, 0.05, 25),)


def test_mixed_history_equals_direct_composition():
    accountant = PrivacyAccountant(1e-5)
    accountant.record(1.0, 0.1, steps=10)
    accountant.record(2.0, 0.05, steps=30)
    accountant.record(1.0, 1.0)
    reference = rdp.RdpAccountant()
    for z, q, n in [(1.0, 0.1, 10), (2.0, 0.05, 30), (1.0, 1.0, 1)]:
        reference.compose(reference_event(z, q, n))
    assert accountant.epsilon() == pytest.approx(reference.get_epsilon(1e-5), rel=1e-12)


def test_epsilon_if_predicts_without_recording():
    accountant = PrivacyAccountant(1e-5)
    accountant.record(1.0, 0.1, steps=5)
    before = accountant.epsilon()
    predicted = accountant.epsilon_if(1.0, 0.1, steps=3)
    assert accountant.epsilon() == before
    accountant.record(1.0, 0.1, steps=3)
    assert accountant.epsilon() == predicted


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_state_round_trips_to_identical_epsilon(kind):
    accountant = PrivacyAccountant(1e-5, accountant=kind)
    for z, q, n in [(1.0, 0.1, 3), (1.0, 0.1, 2), (0.8, 0.02, 40), (1.3, 0.5, 1)]:
        accountant.record(z, q, steps=n)
    state = accountant.state()
    assert state["noise_multiplier"].dtype == np.float64 and state["steps"].dtype == np.int64
    assert len(state["steps"]) == 3  # consecutive equal (z, q) events merge
    resumed = PrivacyAccountant(1e-5, accountant=kind)
    resumed.load({k: v.copy() for k, v in state.items()})
    assert resumed.epsilon() == accountant.epsilon()
    assert resumed.history == accountant.history


def test_empty_accountant_has_zero_epsilon_and_round_trips():
    accountant = PrivacyAccountant(1e-5)
    assert accountant.epsilon() == 0.0
    resumed = PrivacyAccountant(1e-5)
    resumed.load(accountant.state())
    assert resumed.epsilon() == 0.0


def test_load_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="sampling_rate"):
        PrivacyAccountant(1e-5).load(
            {"noise_multiplier": np.ones(2), "sampling_rate": np.ones(3), "steps": np.ones(2, np.int64)}
        )
    with pytest.raises(ValueError, match="lacks"):
        PrivacyAccountant(1e-5).load({"noise_multiplier": np.ones(2)})


def test_budget_check_refuses_before_the_event_and_names_the_budget():
    accountant = PrivacyAccountant(1e-5, budget_epsilon=8.0)
    accountant.record(1.0, 0.1, steps=40)
    assert not accountant.would_exceed(1.0, 0.1)
    assert accountant.would_exceed(0.3, 1.0)
    with pytest.raises(BudgetExceededError) as info:
        accountant.check_budget(0.3, 1.0, round=41)
    message = str(info.value)
    assert "privacy budget epsilon=8.0 (delta=1e-05) would be exceeded in round 41" in message
    assert "noise_multiplier" in message
    assert isinstance(info.value, ValueError)
    assert info.value.epsilon == pytest.approx(accountant.epsilon_if(0.3, 1.0))
    assert accountant.history == ((1.0, 0.1, 40),)  # the refused event was not recorded
    assert str(pickle.loads(pickle.dumps(info.value))) == message


def test_record_never_refuses_a_release_that_happened():
    accountant = PrivacyAccountant(1e-5, budget_epsilon=1.0)
    accountant.record(0.5, 1.0)
    assert accountant.epsilon() > 1.0


def test_without_budget_nothing_exceeds():
    accountant = PrivacyAccountant(1e-5)
    assert not accountant.would_exceed(0.0, 1.0)
    assert accountant.check_budget(0.0, 1.0) == math.inf
