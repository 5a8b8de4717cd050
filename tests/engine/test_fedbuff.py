"""FedBuff (Nguyen et al. 2022): asynchronous aggregation on simulated clocks, through the same round loop."""

import copy

import numpy as np
import pytest

from deai.config import ConfigError, parse_config
from deai.engine.api import build_data, build_model, run
from deai.engine.driver import drive
from deai.engine.simulation import Simulation

BASE = {
    "run": {"rounds": 4, "seed": 2},
    "data": {"dataset": "digits", "num_parties": 20, "partition": "dirichlet", "alpha": 0.5},
    "strategy": {"algorithm": "fedavg", "lr": 0.3, "local_epochs": 2},
    "participation": {"speed_sigma": 1.0},
}


def config(**participation):
    d = copy.deepcopy(BASE)
    d["participation"].update(participation)
    return parse_config(d)


def test_fedbuff_waiting_for_every_party_with_no_staleness_is_fedavg_bit_for_bit():
    sync = run(config(), write=False)
    buffered = run(config(async_buffer=20), write=False)
    assert buffered.model_hash == sync.model_hash
    assert all(m["staleness_counts"] == [20] for m in buffered.history)


def records(cfg):
    fed = build_data(cfg)
    sim = Simulation(cfg, fed, build_model(cfg, fed))
    out = []
    drive(sim.server, sim.transport, cfg.run.rounds, [out.append])
    return out


def test_each_release_aggregates_k_updates_weighted_by_examples_times_staleness_discount():
    cfg = config(async_buffer=4, concurrency=10, staleness_exponent=0.5)
    cfg.run.rounds = 12
    fed = build_data(cfg)
    got = records(cfg)
    assert [len(r.accepted) for r in got] == [4] * 12
    stale_seen = False
    for rec in got:
        b = rec.batch
        s = (rec.version - 1) - b.base_version  # the version before this release, minus each base version
        assert (s >= 0).all()
        stale_seen |= bool((s > 0).any())
        expected = fed.train_sizes[b.party_ids] * (1.0 + s) ** -0.5
        np.testing.assert_allclose(b.weights, expected)
        np.testing.assert_allclose(rec.weights, expected / expected.sum())
    assert stale_seen  # with 10 in flight and releases every 4 updates, slow parties come back stale


def test_the_simulated_clock_only_moves_forward_and_slow_parties_arrive_later():
    cfg = config(async_buffer=3, concurrency=6)
    cfg.run.rounds = 10
    clocks = [r.metrics["sim_clock"] for r in records(cfg)]
    assert all(b >= a for a, b in zip(clocks, clocks[1:], strict=False))
    assert clocks[-1] > 0


def test_max_staleness_rejects_old_updates_with_a_reason():
    cfg = config(async_buffer=3, concurrency=12, max_staleness=0)
    cfg.run.rounds = 8
    got = records(cfg)
    reasons = {why for rec in got for why in rec.rejected.values()}
    assert reasons == {"stale_round"}


@pytest.mark.parametrize(
    "participation, extra, match",
    [
        ({"async_buffer": 30}, {}, "at most"),
        ({"concurrency": 5}, {}, "asynchronous mode"),
        ({"async_buffer": 5}, {"privacy": {"mode": "central", "noise_multiplier": 1.0}}, "privacy.mode"),
        ({"async_buffer": 5, "deadline": 3.0}, {}, "participation.deadline"),
    ],
)
def test_asynchronous_settings_that_cannot_work_are_refused_naming_the_field(participation, extra, match):
    d = copy.deepcopy(BASE)
    d["participation"].update(participation)
    d.update(extra)
    with pytest.raises(ConfigError, match=match):
        parse_config(d)


def test_a_resumed_asynchronous_run_keeps_its_simulated_clock_and_dispatches_afresh(tmp_path):
    from deai.engine.api import resume

    cfg = config(async_buffer=5, concurrency=10)
    cfg.run.rounds = 4
    run(cfg, tmp_path / "r")
    again = resume(tmp_path / "r", rounds=7)
    clocks = [m["sim_clock"] for m in again.history]
    assert len(clocks) == 7 and all(b > a for a, b in zip(clocks, clocks[1:], strict=False))
    assert [m["sampled"] for m in again.history][4] == 10  # in-flight work is not checkpointed
