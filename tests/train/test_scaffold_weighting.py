"""SCAFFOLD's server control averages the party controls with the aggregate's own weights."""

import numpy as np

from deai.engine.api import run
from deai.train.scaffold import ServerControl, party_control_update


class Federation:
    """Parties' c_i (party side) and the server's c, advanced together as the engine does."""

    def __init__(self, n: int, dim: int, weights: np.ndarray) -> None:
        self.c_parties = np.zeros((n, dim), np.float32)
        self.server = ServerControl(dim, weights)

    def round(self, ids: np.ndarray, deltas: np.ndarray, steps: np.ndarray, lr: float) -> None:
        old = self.c_parties[ids]
        new = party_control_update(old, self.server.c, deltas, steps, lr)
        self.c_parties[ids] = new
        self.server.update(ids, new - old)


def test_server_control_is_the_aggregation_weighted_mean_of_party_controls():
    sizes = np.array([1.0, 1.0, 6.0, 2.0])
    fed = Federation(4, 3, sizes)
    rng = np.random.default_rng(0)
    for _ in range(5):  # partial participation, several rounds
        ids = np.sort(rng.choice(4, size=2, replace=False))
        fed.round(ids, rng.normal(size=(2, 3)).astype(np.float32), np.array([1, 7]), lr=0.1)
        np.testing.assert_allclose(fed.server.c, (sizes / sizes.sum()) @ fed.c_parties, rtol=1e-5, atol=1e-6)


def test_uniform_weights_are_the_papers_update():
    a, b = Federation(4, 2, np.ones(4)), Federation(4, 2, np.full(4, 3.0))
    d = np.array([[-1.0, 2.0], [0.5, 0.5]], np.float32)
    for fed in (a, b):
        fed.round(np.array([1, 3]), d, np.array([5, 2]), lr=0.1)
    np.testing.assert_allclose(a.server.c, b.server.c, rtol=1e-6)
    np.testing.assert_allclose(a.server.c, a.c_parties.mean(axis=0), rtol=1e-5, atol=1e-7)


def test_scaffold_on_the_clinics_has_no_loss_spikes():
    cfg = {
        "run": {"rounds": 30, "seed": 0},
        "data": {"dataset": "covid_clinics", "partition": "natural", "num_parties": 88},
        "strategy": {"algorithm": "scaffold", "lr": 0.05, "batch_size": 32, "class_weighting": "balanced"},
    }
    r = run(cfg, write=False)
    losses = [m["loss"] for m in r.history]
    assert max(losses[5:]) < 1.5, losses  # before the fix: spikes to 3.0
    assert r.final_balanced_accuracy > 0.38  # before the fix: 0.33 (chance)
