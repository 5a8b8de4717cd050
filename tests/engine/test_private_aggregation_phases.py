"""Under secure aggregation or HE the server program never holds an update row; the parties mask their own."""

import numpy as np
import pytest

from deai.engine.api import run
from tests.conftest import make_config


def secagg(**sections):
    return make_config(
        run={"rounds": 2},
        data={"num_parties": 10},
        strategy={"aggregator": "secagg", "aggregator_options": {"clip": 1.0}},
        **sections,
    )


def test_the_server_receives_metadata_only_and_still_releases_the_weighted_mean():
    records = []
    r = run(secagg(), write=False, on_record=records.append)
    assert all(rec.batch.deltas.shape == (10, 0) for rec in records)  # no row reached the server
    plain = make_config(run={"rounds": 2}, data={"num_parties": 10})
    # SecAgg's fixed-point encoding and per-coordinate clip are the only differences from the plain mean
    np.testing.assert_allclose(r.params, run(plain, write=False).params, atol=1e-4)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_party_whose_update_cannot_be_encoded_says_so_and_the_others_are_summed():
    r = run(secagg(attack={"kind": "gaussian", "fraction": 0.2, "options": {"sigma": 1e39}}), write=False)
    assert all(m["rejected_reasons"] == {"non_finite": 2} for m in r.history)
    assert all(m["participants"] == 10 for m in r.history)
    assert np.isfinite(r.params).all() and r.final_accuracy > 0.5


def test_scaffold_is_refused_under_secure_aggregation():
    from deai.config import ConfigError, parse_config

    cfg = make_config(
        strategy={"algorithm": "scaffold", "aggregator": "secagg", "aggregator_options": {"clip": 1.0}}
    )
    with pytest.raises(ConfigError, match="control-variate"):
        parse_config(cfg)


@pytest.mark.parametrize(
    "sections",
    [
        {"privacy": {"mode": "central", "noise_multiplier": 1.0, "clip_norm": 1.0}},
        {"strategy": {"aggregator": "secagg", "aggregator_options": {"clip": 1.0}}},
    ],
    ids=["central-dp", "secagg"],
)
def test_under_a_privacy_mode_the_metrics_hold_only_what_the_mechanism_releases(sections):
    r = run(
        make_config(run={"rounds": 2, "party_signals": True}, data={"num_parties": 10}, **sections),
        write=False,
    )
    for m in r.history:
        assert "train_loss" not in m and "update_norm_mean" not in m
        assert set(m["party_signals"]) <= {"party", "malicious", "weight_share", "secagg_survivor"}
    plain = run(make_config(run={"rounds": 1, "party_signals": True}, data={"num_parties": 10}), write=False)
    assert "train_loss" in plain.history[0] and "update_norm" in plain.history[0]["party_signals"]
