"""Training a round in chunks changes nothing but memory: rows are identical, a streamed mean matches."""

import numpy as np
import pytest

from deai.config import parse_config
from deai.engine.api import build_data, build_model
from deai.engine.driver import drive
from deai.engine.simulation import Simulation


def config(**sections):
    d = {
        "run": {"rounds": 3, "seed": 4},
        "data": {"dataset": "digits", "num_parties": 30, "partition": "dirichlet", "alpha": 0.5},
        "strategy": {"algorithm": "fedavg", "lr": 0.3, "local_epochs": 1},
    }
    for k, v in sections.items():
        d.setdefault(k, {}).update(v)
    return parse_config(d)


def simulate(cfg, chunk):
    fed = build_data(cfg)
    sim = Simulation(cfg, fed, build_model(cfg, fed))
    if chunk is not None:
        sim.transport.chunk_parties = chunk
    records = []
    drive(sim.server, sim.transport, cfg.run.rounds, [records.append])
    return sim, records


def test_a_streamed_weighted_mean_equals_the_mean_of_the_whole_matrix():
    cfg = config()
    whole, a = simulate(cfg, None)
    parts, b = simulate(cfg, 7)  # 30 parties in chunks of 7: five batches a round, folded as they come
    assert all(r.batch is None for r in b) and all(r.batch is not None for r in a)
    np.testing.assert_allclose(parts.state.params, whole.state.params, rtol=1e-5, atol=1e-6)
    for x, y in zip(a, b, strict=True):
        assert x.metrics["participants"] == y.metrics["participants"] == 30
        np.testing.assert_array_equal(np.sort(x.accepted), np.sort(y.accepted))
        # the sums differ from one matrix product only in float rounding, which later rounds train from
        assert y.metrics["train_loss"] == pytest.approx(x.metrics["train_loss"], rel=1e-6)
        assert y.metrics["update_norm_mean"] == pytest.approx(x.metrics["update_norm_mean"], rel=1e-6)


@pytest.mark.parametrize(
    "sections",
    [
        {"strategy": {"aggregator": "median"}},
        {"strategy": {"algorithm": "scaffold"}},
        {
            "participation": {"deadline": 3.0, "straggler_policy": "partial", "speed_sigma": 1.0},
            "strategy": {"algorithm": "fednova"},
        },
    ],
    ids=["median", "scaffold", "fednova-partial-deadline"],
)
def test_rules_that_need_every_row_get_the_identical_matrix_from_chunks(sections):
    cfg = config(**sections)
    whole, _ = simulate(cfg, None)
    parts, _ = simulate(cfg, 4)
    np.testing.assert_array_equal(parts.state.params, whole.state.params)


def test_a_rejected_update_in_one_chunk_is_reported_while_the_others_are_folded():
    cfg = config(validation={"max_update_norm": 0.9})
    whole, a = simulate(cfg, None)
    parts, b = simulate(cfg, 6)
    assert a[0].rejected and a[0].rejected == b[0].rejected
    np.testing.assert_allclose(parts.state.params, whole.state.params, rtol=1e-5, atol=1e-6)


def test_an_omniscient_attack_sees_the_whole_round_so_the_round_is_not_chunked():
    cfg = config(attack={"kind": "alie", "fraction": 0.2}, strategy={"aggregator": "trimmed_mean"})
    fed = build_data(cfg)
    sim = Simulation(cfg, fed, build_model(cfg, fed))
    assert sim.transport.chunk_parties >= fed.num_parties
