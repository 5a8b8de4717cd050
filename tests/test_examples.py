"""Every shipped example is a valid config, and the quick ones train past chance in a few rounds."""

from pathlib import Path

import pytest

from deai.config import load_config
from deai.engine.api import run

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))


def test_there_is_an_example_for_every_algorithm():
    algorithms = {load_config(p).strategy.algorithm for p in EXAMPLES}
    assert algorithms == {"fedavg", "fedprox", "scaffold", "fedadam", "fedyogi", "fedadagrad", "fednova"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_and_runs_two_rounds(path):
    cfg = load_config(path)
    if cfg.model.kind == "cnn":
        pytest.importorskip("torch", reason="the torch extra is not installed")
        cfg.data.max_examples = 2000  # small, but enough local steps to leave chance behind
        cfg.strategy.local_epochs = 3
    if cfg.data.dataset == "fashion_mnist":
        try:
            from deai.data import load_dataset

            load_dataset("fashion_mnist")
        except FileNotFoundError:
            pytest.skip("dataset-fashion-mnist is not installed")
    cfg.run.rounds = 2
    result = run(cfg, write=False)
    assert result.rounds == 2
    assert result.final_accuracy > 1.5 / cfg_classes(cfg)


def cfg_classes(cfg) -> int:
    return {"digits": 10, "fashion_mnist": 10, "breast_cancer": 2, "covid_clinics": 3}[cfg.data.dataset]
