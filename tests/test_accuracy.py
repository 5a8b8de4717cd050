"""Accuracy targets on real offline data (the issue's acceptance numbers)."""

from pathlib import Path

import numpy as np

from deai.config import load_config
from deai.engine.api import run
from tests.conftest import make_config

FEDAVG_DIGITS = Path(__file__).resolve().parents[1] / "examples" / "fedavg_digits.toml"


# examples/fedavg_digits.toml's final accuracy, measured: seeds 0-4 0.953 0.953 0.961 0.944 0.981
# (mean 0.958), seeds 5-9 0.969 0.961 0.956 0.950 0.958; under an earlier per-party test split, seeds 0-4
# gave 0.969 0.950 0.956 0.967 0.947 (mean 0.958). Each seed evaluates on its own ~360 test rows (one row
# is 0.0028): the mean is steady, a single seed swings by +-0.02.
def test_fedavg_digits_ten_iid_parties_reaches_95_percent_on_average_over_seeds():
    accuracies = []
    for seed in range(5):
        cfg = load_config(FEDAVG_DIGITS)
        cfg.run.seed = seed
        accuracies.append(run(cfg, write=False).final_accuracy)
    assert np.mean(accuracies) >= 0.95, accuracies
    assert min(accuracies) >= 0.93, accuracies


def test_best_algorithm_on_dirichlet_0_1_over_50_parties_reaches_90_percent():
    r = run(
        make_config(
            run={"rounds": 50},
            data={"num_parties": 50, "partition": "dirichlet", "alpha": 0.1},
            strategy={"algorithm": "fedadam", "lr": 0.5, "server_lr": 0.03},
        ),
        write=False,
    )
    assert r.final_accuracy >= 0.90, r.final_accuracy
