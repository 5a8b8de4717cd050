"""Every shipped example is a valid config, and the quick ones train past chance in a few rounds."""

from pathlib import Path

import pytest

from deai.config import load_config
from deai.engine.api import run

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))


def test_there_is_an_example_for_every_algorithm():
    algorithms = {load_config(p).strategy.algorithm for p in EXAMPLES}
    assert algorithms == {"fedavg", "fedprox", "scaffold", "fedadam", "fedyogi", "fedadagrad", "fednova"}


NUM_CLASSES = {"digits": 10, "fashion_mnist": 10, "breast_cancer": 2, "covid_clinics": 3}

# Balanced accuracy (mean per-class recall) is 1 / classes for any constant prediction, so it is the
# score that "past chance" must be about: covid_clinics is 92.5% negative, and predicting "negative"
# always scores 0.925 accuracy. Measured after 2 rounds: the 10-class examples 0.40 (cnn_fashion_mnist),
# 0.49 (fedadam/fedyogi_dirichlet) to 0.91 (fedavg_digits); mlp_breast_cancer 0.74 (0.85 under an earlier
# per-party test split). covid_clinics (SCAFFOLD, scored on the task's held-out patients) is hard for a
# linear model (pooled logistic regression reaches ~0.48) and needs a few rounds: after 8 it scores
# 0.424, 0.444, 0.436, 0.473, 0.425 at seeds 0-4.
ROUNDS = {"covid_clinics": 8}
MARGIN_ABOVE_CHANCE = {"covid_clinics": 0.05}
DEFAULT_MARGIN = 0.15


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_and_trains_past_chance_balanced_accuracy_in_a_few_rounds(path):
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
    cfg.run.rounds = ROUNDS.get(path.stem, 2)
    result = run(cfg, write=False)
    assert result.rounds == cfg.run.rounds
    chance = 1 / NUM_CLASSES[cfg.data.dataset]
    bar = chance + MARGIN_ABOVE_CHANCE.get(path.stem, DEFAULT_MARGIN)
    assert result.final_balanced_accuracy > bar, (result.final_balanced_accuracy, bar)
