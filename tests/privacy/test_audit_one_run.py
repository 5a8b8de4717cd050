"""One-run auditing and LiRA against independent truth: DeepMind's reference bound, closed forms, and a
synthetic attack whose answer is known; then the canary audit catching a broken mechanism in the engine."""

from __future__ import annotations

import importlib.util
import math
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from deai.attacks import choose_malicious
from deai.attacks.base import RoundContext
from deai.attacks.canary import Canary, canary_directions, canary_included
from deai.engine.api import as_config, build_data, build_model, run
from deai.privacy.audit.lira import lira_metrics, logit_confidence, tpr_at_fpr
from deai.privacy.audit.one_run import (
    audit_canaries,
    audit_ceiling,
    audit_scores,
    empirical_epsilon,
    one_run_p_value,
)
from tests.conftest import make_config


def reference_auditing():
    """jax_privacy/auditing.py (Google DeepMind), loaded by path: needs only numpy, scipy, dp-accounting."""
    path = Path(sysconfig.get_paths()["purelib"]) / "jax_privacy" / "auditing.py"
    if not path.is_file():
        pytest.skip("jax-privacy is not installed (make install adds it, without its JAX dependencies)")
    spec = importlib.util.spec_from_file_location("jax_privacy_auditing", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("m", "r", "v"), [(1000, 200, 150), (1000, 200, 190), (500, 100, 70), (5000, 1000, 990)]
)
@pytest.mark.parametrize("delta", [0.0, 1e-5])
def test_the_one_run_bound_matches_deepminds_reference(m, r, v, delta):
    ref = reference_auditing()
    for eps in (0.1, 1.0, 3.0):
        assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(
            ref._one_run_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-15
        )
    assert empirical_epsilon(m, r, v, delta) == pytest.approx(
        ref._epsilon_one_run(0.0, m, r, v, 0.05, delta), abs=1e-4
    )


def test_the_ceiling_is_the_all_correct_binomial_closed_form():
    # delta = 0, every guess right: P[Binom(r, p) = r] = p^r = beta  ->  eps = logit(beta^(1/r))
    for r in (40, 200, 1000):
        p = 0.05 ** (1 / r)
        assert audit_ceiling(10 * r, r, 0.0) == pytest.approx(math.log(p / (1 - p)), rel=1e-4)
    assert binom.sf(199, 200, 1 / (1 + math.exp(-audit_ceiling(1000, 200, 0.0)))) == pytest.approx(
        0.05, rel=1e-3
    )


def test_chance_guesses_certify_nothing_and_bad_counts_are_refused():
    assert empirical_epsilon(1000, 200, 100, 1e-5) == 0.0
    with pytest.raises(ValueError, match="correct"):
        empirical_epsilon(100, 200, 50, 0.0)
    with pytest.raises(ValueError, match="guesses"):
        audit_scores(np.zeros(10), np.zeros(10, bool), 40, 0.0)


def test_lira_separates_a_known_leak_and_not_a_null():
    """Synthetic phi: members' confidence is shifted up by `gap` on every example of the client."""
    rng = np.random.default_rng(0)
    k, clients, per = 16, 100, 5
    member = rng.random((k, clients)) < 0.5
    owner = np.repeat(np.arange(clients), per)
    base = rng.normal(size=owner.size) * 2  # each example's own difficulty, shared by every model
    for gap, lo, hi in ((0.0, 0.45, 0.55), (1.0, 0.95, 1.0)):
        phi = base + rng.normal(size=(k, owner.size)) * 0.5 + gap * member[:, owner]
        metrics = lira_metrics(phi, member, owner)
        assert lo <= metrics["auc"] <= hi
    scores, labels = np.arange(1000.0), np.arange(1000) >= 500
    assert tpr_at_fpr(scores, labels, 0.01) == 1.0  # perfectly separated
    assert tpr_at_fpr(-scores, labels, 0.01) == 0.0


def test_logit_confidence_is_log_odds_of_the_true_class():
    p = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]])
    np.testing.assert_allclose(
        logit_confidence(np.log(p), np.array([0, 2])), np.log([0.7 / 0.3, 0.05 / 0.95])
    )


def test_canaries_send_their_direction_when_included_and_zeros_otherwise():
    ids = np.arange(40)
    attack = Canary(audit_seed=3, norm=2.0)
    updates = np.ones((40, 50), np.float32)
    ctx = RoundContext(seed=0, round=1, party_ids=ids, malicious=np.ones(40, bool))
    out = attack.craft(updates, ctx)
    inc = canary_included(3, ids)
    assert 10 < inc.sum() < 30
    np.testing.assert_allclose(np.linalg.norm(out[inc], axis=1), 2.0, rtol=1e-5)
    assert not out[~inc].any()
    np.testing.assert_allclose(out[inc], 2.0 * canary_directions(3, ids[inc], 50), rtol=1e-5)


def canary_audit(noise_multiplier: float) -> tuple[float, float]:
    """A small central-DP run on digits with 300 canary clients; (empirical eps, ceiling)."""
    canaries, total = 300, 340
    cfg = make_config(
        run={"rounds": 5, "seed": 0},
        data={"num_parties": total, "holdout_fraction": 0.2, "test_fraction": 0.0},
        privacy={"mode": "central", "noise_multiplier": noise_multiplier, "clip_norm": 1.0},
        attack={"kind": "canary", "fraction": canaries / total, "options": {"audit_seed": 11, "norm": 1.0}},
    )
    experiment = as_config(cfg)
    start = build_model(experiment, build_data(experiment)).init_params(0).astype(np.float64)
    result = run(cfg, write=False)
    ids = np.flatnonzero(choose_malicious(total, canaries / total, 0))
    audit = audit_canaries(result.params.astype(np.float64) - start, 11, ids, 60, 1e-5)
    return audit.epsilon_lower_bound, audit.ceiling


def test_the_canary_audit_flags_a_mechanism_with_ten_times_less_noise_than_claimed():
    from deai.privacy.dp.accountant import calibrate_noise_multiplier

    z = calibrate_noise_multiplier(1.0, 1.0, 5, 1e-5, "rdp")  # what the accountant is told: eps = 1
    honest, ceiling = canary_audit(z)
    broken, _ = canary_audit(z / 10)
    assert honest <= 1.0  # an honest mechanism is never caught above its claim
    assert broken > 1.0  # the broken one is: its certified lower bound exceeds the claim
    assert ceiling > 1.0  # (the audit could see past the claim at all)
