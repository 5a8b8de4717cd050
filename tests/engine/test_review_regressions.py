"""Regressions from the integration review: DP accounting edges, secure aggregation edges, validation."""

import math

import numpy as np
import pytest

from deai.config import ConfigError
from deai.engine.api import run
from tests.conftest import make_config


def test_central_dp_clips_on_the_server_so_crafted_updates_cannot_exceed_the_sensitivity():
    cfg = make_config(
        run={"rounds": 1},
        data={"num_parties": 20},
        attack={"kind": "ipm", "fraction": 0.2, "options": {"epsilon": 100.0}},
        privacy={"mode": "central", "noise_multiplier": 0.0, "clip_norm": 1.0},
    )
    r = run(cfg, write=False)
    # q = 1, so the fixed-denominator average of 20 rows clipped to norm 1 has norm <= 1
    assert np.linalg.norm(r.params) <= 1.0 + 1e-5


def test_central_dp_rounds_with_no_reporter_still_release_noise_and_are_accounted():
    r = run(
        make_config(
            run={"rounds": 12},
            data={"num_parties": 4},
            participation={"fraction": 0.2, "poisson": True},
            privacy={"mode": "central", "noise_multiplier": 2.0},
        ),
        write=False,
    )
    assert any(m["participants"] == 0 for m in r.history)
    assert all("epsilon" in m for m in r.history)
    eps = [m["epsilon"] for m in r.history]
    assert all(b > a for a, b in zip(eps, eps[1:], strict=False))


def test_secure_aggregation_skips_a_round_with_a_single_update_instead_of_crashing():
    r = run(
        make_config(
            run={"rounds": 8},
            data={"num_parties": 4},
            participation={"fraction": 0.3, "poisson": True},
            strategy={"aggregator": "secagg", "aggregator_options": {"clip": 1.0}},
        ),
        write=False,
    )
    assert r.rounds == 8
    skipped = [m for m in r.history if m.get("skipped")]
    assert skipped and all(m["participants"] < 2 for m in skipped)


@pytest.mark.filterwarnings(
    "ignore:overflow encountered in cast:RuntimeWarning"
)  # the attack sends inf on purpose
def test_rejected_updates_do_not_touch_scaffold_controls():
    r = run(
        make_config(
            run={"rounds": 4},
            data={"num_parties": 10},
            strategy={"algorithm": "scaffold"},
            attack={"kind": "gaussian", "fraction": 0.2, "options": {"sigma": 1e39}},
        ),
        write=False,
    )
    assert all(m["rejected_reasons"] == {"non_finite": 2} for m in r.history)
    assert np.isfinite(r.params).all() and r.final_accuracy > 0.8


def test_an_attack_fraction_that_selects_nobody_is_a_config_error():
    with pytest.raises(ConfigError, match="selects no one"):
        run(
            make_config(data={"num_parties": 10}, attack={"kind": "sign_flip", "fraction": 0.04}), write=False
        )


def test_a_run_stopped_by_the_budget_reports_the_accuracy_of_its_last_model():
    from deai.privacy.dp.accountant import compute_epsilon

    planned = compute_epsilon(2.0, 0.5, 10, 1e-5)
    r = run(
        make_config(
            run={"rounds": 10, "eval_every": 5},
            data={"num_parties": 40},
            participation={"fraction": 0.5, "poisson": True, "dropout_rate": 0.3},
            privacy={"mode": "distributed", "noise_multiplier": 2.0, "budget_epsilon": planned * 1.001},
            strategy={"lr": 0.5, "aggregator": "secagg", "aggregator_options": {"clip": 2.0}},
        ),
        write=False,
    )
    assert r.stopped and r.rounds < 10
    assert not math.isnan(r.final_accuracy)


def test_distributed_dp_without_secure_aggregation_is_refused():
    with pytest.raises(ConfigError, match="privacy.mode 'distributed'.*secagg"):
        run(make_config(data={"num_parties": 20}, privacy={"mode": "distributed"}), write=False)


def test_distributed_dp_needs_enough_parties_per_round():
    with pytest.raises(ConfigError, match="at least 10 parties per round"):
        run(make_config(data={"num_parties": 8}, privacy={"mode": "distributed"}), write=False)


def test_personalization_without_party_test_rows_is_a_config_error():
    with pytest.raises(ConfigError, match="test_fraction > 0"):
        run(make_config(data={"test_fraction": 0.0}, strategy={"personalization_epochs": 1}), write=False)
