"""Accuracy targets on real offline data (the issue's acceptance numbers)."""

from deai.engine.api import run
from tests.conftest import make_config


def test_fedavg_digits_ten_iid_parties_reaches_95_percent():
    r = run("examples/fedavg_digits.toml", write=False)
    assert r.final_accuracy >= 0.95, r.final_accuracy


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
