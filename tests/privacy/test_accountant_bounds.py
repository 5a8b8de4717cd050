"""The accountant at the edges: tiny noise answers quickly with a valid upper bound, or refuses clearly.

The PLD's privacy-loss range grows like ``1 / z^2``; at ``z = 0.01`` dp_accounting's default grid
would take minutes and gigabytes. Every epsilon here is checked against a truth computed without
dp_accounting: the closed-form Gaussian mechanism (Balle & Wang 2018) without subsampling, and, for
the subsampled mechanism at tiny noise, the exact mixture of Gaussian privacy losses it reduces to.
"""

import json
import math
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from dp_accounting import pld
from dp_accounting.pld import privacy_loss_distribution as pld_distribution
from scipy import optimize, special, stats

from deai.privacy.dp.accountant import (
    DEFAULT_PLD_VALUE_DISCRETIZATION,
    PrivacyAccountant,
    calibrate_noise_multiplier,
    compute_epsilon,
    pld_discretization,
    subsampled_gaussian_event,
)

ROOT = Path(__file__).resolve().parents[2]
# Far above the few seconds these take, far below the minutes an unbounded PLD takes.
BOUNDED_S = 60


@pytest.fixture(autouse=True)
def bounded_time():
    """Fail (rather than hang the suite) if one computation runs away again."""

    def expire(signum, frame):
        raise TimeoutError(f"took more than {BOUNDED_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(BOUNDED_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _log_hockey_stick(eps: float, mean: np.ndarray, sd: np.ndarray, log_weight: np.ndarray) -> float:
    """``log delta(eps) = log E[(1 - e^(eps - L))_+]`` for a privacy loss ``L`` that is a mixture of
    ``N(mean_k, sd_k^2)`` with weights ``exp(log_weight_k)``; each Gaussian term has a closed form."""
    terms = []
    for m, s, w in zip(mean, sd, log_weight, strict=True):
        if s == 0:
            if m > eps:
                terms.append(w + math.log1p(-math.exp(eps - m)))
            continue
        a = special.log_ndtr((m - eps) / s)
        b = eps - m + s * s / 2 + special.log_ndtr((m - eps) / s - s)
        if b < a:
            terms.append(w + a + math.log1p(-math.exp(b - a)))
    return float(special.logsumexp(terms)) if terms else -math.inf


def gaussian_epsilon(sigma: float, delta: float) -> float:
    """Exact epsilon of the Gaussian mechanism with sensitivity 1 (Balle & Wang 2018, Theorem 8)."""
    mean, sd = np.array([1 / (2 * sigma**2)]), np.array([1 / sigma])
    return optimize.brentq(
        lambda e: _log_hockey_stick(e, mean, sd, np.zeros(1)) - math.log(delta), 0.0, 1e9, xtol=1e-9
    )


def tiny_noise_subsampled_epsilon(z: float, q: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps when ``z`` is tiny (remove direction).

    A step that includes the record has loss ``log(1 - q + q e^l) = log q + l`` with ``l`` the plain
    Gaussian loss (``e^l`` is astronomically large); one that leaves it out has ``log(1 - q)`` (``e^l``
    is astronomically small). So, given ``K ~ Binomial(steps, q)`` inclusions, the composed loss is
    ``N(K / 2z^2, K / z^2) + K log q + (steps - K) log(1 - q)``: a mixture of Gaussian mechanisms whose
    hockey-stick divergence has a closed form. The add direction is bounded by ``-steps log(1 - q)``.
    """
    k = np.arange(steps + 1)
    mean = k / (2 * z**2) + k * math.log(q) + (steps - k) * math.log1p(-q)
    sd = np.sqrt(k) / z
    log_weight = stats.binom.logpmf(k, steps, q)
    return optimize.brentq(
        lambda e: _log_hockey_stick(e, mean, sd, log_weight) - math.log(delta), 1.0, 1e12, xtol=1e-6
    )


def test_the_pld_command_at_tiny_noise_answers_in_bounded_time_with_a_valid_tight_bound():
    """`deai privacy epsilon --noise-multiplier 0.01 --sampling-rate 0.5 --steps 100 --accountant pld`
    ran for minutes at 100% CPU and 1.1 GB without an answer."""
    proc = subprocess.run(
        [sys.executable, "-m", "deai.cli", "privacy", "epsilon", "--noise-multiplier", "0.01"]
        + ["--sampling-rate", "0.5", "--steps", "100", "--accountant", "pld", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BOUNDED_S,
    )
    assert proc.returncode == 0, proc.stderr
    eps = json.loads(proc.stdout)["epsilon"]
    truth = tiny_noise_subsampled_epsilon(0.01, 0.5, 100, 1e-5)  # 355189.3
    assert truth <= eps <= truth * (1 + 1e-4)
    assert eps < compute_epsilon(0.01, 0.5, 100, 1e-5, "rdp")
    assert "coarsened" in proc.stderr  # the user is told the grid was not the one asked for


def test_the_tiny_noise_truth_agrees_with_dp_accounting_where_both_are_cheap():
    """The mixture formula itself, against the library's delta(eps) curve (its eps(delta) rounds up by
    up to a nat here, so delta is the sharper comparison)."""
    truth = tiny_noise_subsampled_epsilon(0.05, 0.5, 20, 1e-5)
    library = pld_distribution.from_gaussian_mechanism(
        0.05, value_discretization_interval=1e-2, sampling_prob=0.5
    )
    assert library.self_compose(20).get_delta_for_epsilon(truth) == pytest.approx(1e-5, rel=1e-3)


def test_coarsened_pld_without_subsampling_stays_above_the_closed_form_gaussian():
    # 10,000 unsubsampled steps at z = 1 are one Gaussian with sigma = 0.01: 39 s on the 1e-3 grid.
    with pytest.warns(UserWarning, match="coarsened from 0.001"):
        eps = compute_epsilon(1.0, 1.0, 10_000, 1e-5, "pld")
    exact = gaussian_epsilon(0.01, 1e-5)  # 5425.51
    assert exact <= eps <= exact * (1 + 1e-3)


def test_coarsened_pld_is_dp_accounting_at_the_reported_interval():
    interval = pld_discretization(0.1, 1.0, 100, 1e-5)
    assert interval > DEFAULT_PLD_VALUE_DISCRETIZATION
    reference = pld.PLDAccountant(value_discretization_interval=interval)
    reference.compose(subsampled_gaussian_event(0.1, 1.0, 100))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eps = compute_epsilon(0.1, 1.0, 100, 1e-5, "pld")
    assert eps == pytest.approx(reference.get_epsilon(1e-5), rel=1e-12)


def test_ordinary_noise_keeps_the_requested_interval_and_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for z, q, steps in [(1.0, 0.01, 1000), (0.8, 0.1, 300), (1.0, 1.0, 10), (0.5, 0.05, 100)]:
            assert pld_discretization(z, q, steps, 1e-5) == DEFAULT_PLD_VALUE_DISCRETIZATION
            compute_epsilon(z, q, steps, 1e-5, "pld")


def test_noise_too_small_for_any_pld_grid_is_refused_naming_the_rdp_bound():
    rdp_bound = compute_epsilon(1e-4, 0.5, 100, 1e-5, "rdp")
    with pytest.raises(ValueError, match=r"too small for the PLD accountant.*accountant='rdp'") as info:
        compute_epsilon(1e-4, 0.5, 100, 1e-5, "pld")
    assert f"bounds it by {rdp_bound:.3g}" in str(info.value)


def test_a_pld_ledger_with_one_tiny_noise_round_answers_or_refuses_in_bounded_time():
    accountant = PrivacyAccountant(1e-5, accountant="pld")
    accountant.record(1.0, 0.1, steps=50)
    accountant.record(0.01, 0.1, steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eps = accountant.epsilon()
    rdp = PrivacyAccountant(1e-5)
    rdp.record(1.0, 0.1, steps=50)
    rdp.record(0.01, 0.1, steps=5)
    assert tiny_noise_subsampled_epsilon(0.01, 0.1, 5, 1e-5) <= eps < rdp.epsilon()


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_zero_noise_is_infinite_epsilon(kind):
    assert compute_epsilon(0.0, 0.5, 100, 1e-5, kind) == math.inf
    assert compute_epsilon(0.0, 1.0, 1, 1e-5, kind) == math.inf


@pytest.mark.parametrize("q", [0.5, 1.0])
def test_noise_too_small_for_floating_point_is_infinite_epsilon_under_rdp(q):
    # The library divides by z^2: at z = 1e-300 it raised ZeroDivisionError for q < 1.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert compute_epsilon(1e-300, q, 100, 1e-5, "rdp") == math.inf


@pytest.mark.slow
def test_calibration_to_a_loose_pld_target_searches_small_noise_in_bounded_time():
    # Target 500 at q = 0.5 over 10 steps needs z ~ 0.11: the bracket halves down to z = 1/16, and on
    # the 1e-3 grid every probe of the root finder below z = 0.2 costs seconds to a minute.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        z = calibrate_noise_multiplier(500.0, 0.5, 10, 1e-5, "pld")
        eps = compute_epsilon(z, 0.5, 10, 1e-5, "pld")
    assert 0.999 * 500 <= eps <= 500
    assert tiny_noise_subsampled_epsilon(z, 0.5, 10, 1e-5) <= eps
    # and it is the smallest such z, to the search's tolerance: 1e-4 less noise overshoots the target
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert compute_epsilon(z * (1 - 1e-4), 0.5, 10, 1e-5, "pld") > 500
