"""A party program that holds only its own directory trains exactly as the simulator trains that party."""

import numpy as np
import pytest

from deai.cli import main
from deai.config import parse_config
from deai.engine.api import build_data, build_model
from deai.engine.driver import drive
from deai.engine.simulation import Simulation
from deai.messages import TrainTask
from deai.party import PartyProgram, PartyShards


def config(**strategy):
    return parse_config(
        {
            "run": {"rounds": 1, "seed": 3},
            "data": {"dataset": "digits", "num_parties": 12, "partition": "dirichlet", "alpha": 0.5},
            "model": {"kind": "mlp", "hidden": 16},
            "strategy": {"algorithm": "fedavg", "lr": 0.3, "local_epochs": 2, **strategy},
        }
    )


def simulated_round_one(cfg):
    """Every party's update in round 1 of the simulator, as the server received it."""
    fed = build_data(cfg)
    sim = Simulation(cfg, fed, build_model(cfg, fed))
    got = []
    drive(sim.server, sim.transport, 1, [got.append])
    return sim, got[0].batch


@pytest.mark.parametrize("party", [0, 5, 11])
def test_one_party_from_its_split_directory_sends_the_update_the_simulator_computes_for_it(tmp_path, party):
    cfg = config()
    path = tmp_path / "cfg.toml"
    path.write_text(cfg.to_toml())
    assert main(["data", "split", str(path), "--out", str(tmp_path / "split")]) == 0
    sim, batch = simulated_round_one(cfg)
    row = int(np.flatnonzero(batch.party_ids == party)[0])

    shards = PartyShards.from_party_dir(tmp_path / "split" / f"party-{party:05d}")
    assert shards.ids.tolist() == [party]  # it holds its own rows and nothing else
    alone = PartyProgram(sim.model, shards, sim.strategy.transforms)
    task = TrainTask(
        round=1,
        version=0,
        params=sim.model.init_params(cfg.run.seed),
        spec=sim.strategy.local,
        seed=cfg.run.seed,
        party_ids=np.array([party]),
    )
    mine = alone.train(task, np.array([party]))
    np.testing.assert_array_equal(mine.deltas[0], batch.deltas[row])
    assert mine.weights[0] == batch.weights[row] and mine.steps[0] == batch.steps[row]


def test_a_party_program_refuses_a_party_it_does_not_hold(tmp_path):
    cfg = config()
    path = tmp_path / "cfg.toml"
    path.write_text(cfg.to_toml())
    assert main(["data", "split", str(path), "--out", str(tmp_path / "split")]) == 0
    shards = PartyShards.from_party_dir(tmp_path / "split" / "party-00002")
    with pytest.raises(KeyError, match="not held"):
        shards.local(np.array([3]))
