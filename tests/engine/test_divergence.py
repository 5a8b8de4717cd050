"""A run whose training diverges stops with a message naming what to change; no round crashes on input."""

import numpy as np
import pytest

from deai.engine.api import run
from tests.conftest import make_config


def test_huge_learning_rate_stops_as_diverged_and_keeps_the_last_finite_model():
    r = run(
        make_config(
            run={"rounds": 6},
            data={"dataset": "breast_cancer", "num_parties": 8},
            model={"kind": "mlp", "hidden": 32},
            strategy={"lr": 1e6, "local_epochs": 2},
        ),
        write=False,
    )
    assert r.diverged and r.rounds < 6
    assert "diverged" in r.stopped and "strategy.lr (now 1e+06)" in r.stopped
    assert np.isfinite(r.params).all()
    assert r.summary()["diverged"] is True


def test_a_normal_run_is_not_diverged():
    r = run(make_config(), write=False)
    assert not r.diverged and r.stopped is None and "diverged" not in r.summary()
    assert all(m["released"] for m in r.history)


def test_finite_but_huge_attack_is_rejected_and_the_round_goes_on():
    """IPM with epsilon 1e20 sends finite float32 values whose squares overflow: rejected, not a crash."""
    r = run(
        make_config(
            run={"rounds": 3},
            strategy={"lr": 0.5, "aggregator": "reputation"},
            attack={"kind": "ipm", "fraction": 0.3, "options": {"epsilon": 1e20}},
        ),
        write=False,
    )
    assert not r.diverged and r.rounds == 3
    assert all(m["rejected_reasons"] == {"norm_overflow": 3} for m in r.history)
    assert r.final_accuracy > 0.8


def test_an_aggregator_that_cannot_take_a_round_skips_it_with_a_reason():
    """Krum needs n >= 2f + 3 updates; a round thinned by dropouts below that releases nothing."""
    with pytest.warns(UserWarning, match="rounds released no update"):
        r = run(
            make_config(
                run={"rounds": 8},
                data={"num_parties": 10},
                strategy={"aggregator": "krum", "aggregator_options": {"num_byzantine": 3}},
                participation={"dropout_rate": 0.3},
            ),
            write=False,
        )
    skipped = [m for m in r.history if "skipped" in m]
    assert skipped and all(not m["released"] for m in skipped)
    assert all("aggregator krum could not aggregate this round" in m["skipped"] for m in skipped)
    assert any(m["released"] for m in r.history)
