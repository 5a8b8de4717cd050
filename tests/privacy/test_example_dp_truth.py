"""Example-level DP-SGD against independent truths: the noise it really adds, the epsilon it really spends.

DP-SGD (Abadi et al. 2016) adds ``N(0, (z C)^2)`` to each step's sum of clipped per-example
gradients and divides by the batch size ``B``: per coordinate, noise of std ``z C / B`` on the mean
gradient. Each party is its own data set: ``rounds * epochs * ceil(n / B)`` steps of the
Poisson-subsampled Gaussian at rate ``B / n``, composed with dp_accounting directly here.
"""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from deai.engine.api import as_config, build_data, run
from deai.models import LogisticRegression
from deai.privacy.dp.dpsgd import ExampleLevelDPSGD
from tests.conftest import make_config


def example_epsilon_truth(z: float, batch: int, sizes, steps_per_round, rounds_in, delta: float = 1e-5):
    """The worst party's epsilon: each party composes its own steps at sampling rate ``B / n``."""
    worst = 0.0
    for n, per_round, r in zip(sizes, steps_per_round, rounds_in, strict=True):
        if r == 0:
            continue
        event = dp_accounting.PoissonSampledDpEvent(min(1.0, batch / n), dp_accounting.GaussianDpEvent(z))
        accountant = rdp.RdpAccountant()
        accountant.compose(event, int(r * per_round))
        worst = max(worst, accountant.get_epsilon(delta))
    return worst


def model_change_per_lr(noisy, clean, lr: float) -> np.ndarray:
    return (noisy.params.astype(np.float64) - clean.params.astype(np.float64)) / lr


# ---------------------------------------------------------------------------- the noise oracle
def test_the_dp_sgd_gradient_is_the_clipped_mean_plus_noise_of_std_zC_over_B():
    rng = np.random.default_rng(0)
    model = LogisticRegression(6, 3)
    parties, batch, z, clip = 4, 8, 2.0, 0.3
    W = rng.normal(size=(parties, model.layout.dim)).astype(np.float32)
    X = rng.normal(size=(parties, batch, 6)).astype(np.float32) * 3
    y = rng.integers(0, 3, size=(parties, batch))
    mask = np.ones((parties, batch), dtype=np.float32)
    mask[0, 5:] = 0  # a short last batch: the denominator stays B
    # Brute force: one example at a time, clip, sum the real ones, divide by B.
    clean = np.zeros((parties, model.layout.dim))
    for p in range(parties):
        for b in range(batch):
            if mask[p, b]:
                _, g = model.loss_grad(
                    W[p : p + 1], X[p : p + 1, b : b + 1], y[p : p + 1, b : b + 1], mask[:1, :1]
                )
                g = g[0].astype(np.float64)
                clean[p] += g * min(1.0, clip / np.linalg.norm(g))
    clean /= batch
    oracle = ExampleLevelDPSGD(clip=clip, noise_multiplier=z, batch_size=batch)
    ids = np.arange(parties)
    draws = np.stack([oracle(model, W, X, y, mask, 0, 1, ids, step)[1] for step in range(200)])
    noise = draws.astype(np.float64) - clean[None]  # [steps, parties, dim]
    expected = z * clip / batch
    assert noise.std() == pytest.approx(expected, rel=0.03)  # 16,800 draws
    assert abs(noise.mean()) < 4 * expected / math.sqrt(noise.size)
    # independent across steps and parties: the mean over 200 steps is the clean gradient
    np.testing.assert_allclose(draws.mean(axis=0), clean, atol=5 * expected / math.sqrt(200))
    assert abs(np.corrcoef(noise[:-1].ravel(), noise[1:].ravel())[0, 1]) < 0.05
    assert abs(np.corrcoef(noise[:, 0].ravel(), noise[:, 1].ravel())[0, 1]) < 0.05


# ---------------------------------------------------------------------------- through the engine
Z, CLIP, BATCH, EPOCHS, LR = 4.0, 0.5, 16, 2, 1e-3


def vectorized_config(z: float, **sections) -> dict:
    base = {
        "run": {"rounds": 1},
        "data": {"num_parties": 3, "max_examples": 400},
        "strategy": {"lr": LR, "batch_size": BATCH, "local_epochs": EPOCHS},
        "privacy": {"example_noise_multiplier": z, "example_clip_norm": CLIP},
    }
    return make_config(**{name: base.get(name, {}) | sections.get(name, {}) for name in base | sections})


def test_engine_example_level_noise_has_std_zC_over_B_per_step():
    """With a tiny lr the noise barely moves the gradients, so the noisy run minus the noise-free
    run (same seed, same batches) is ``-lr`` times the sum of every step's noise, FedAvg-weighted."""
    noisy = run(vectorized_config(Z), write=False)
    clean = run(vectorized_config(0.0), write=False)
    sizes = build_data(as_config(vectorized_config(Z))).train_sizes.astype(np.float64)
    steps = EPOCHS * np.ceil(sizes / BATCH)
    weights = sizes / sizes.sum()
    expected = Z * CLIP / BATCH * math.sqrt(float((weights**2 * steps).sum()))
    change = model_change_per_lr(noisy, clean, LR)  # 650 coordinates: std to about 3%
    assert change.std() == pytest.approx(expected, rel=0.12)
    assert abs(change.mean()) < 4 * expected / math.sqrt(change.size)


def test_engine_example_epsilon_composes_every_local_step_of_every_round_taken():
    rounds = 3
    cfg = vectorized_config(
        1.1,
        run={"rounds": rounds, "party_signals": True},
        data={"num_parties": 4, "max_examples": 400, "partition": "quantity_skew", "quantity_sigma": 0.5},
        participation={"fraction": 0.5},  # parties take part in different numbers of rounds
    )
    r = run(cfg, write=False)
    sizes = build_data(as_config(cfg)).train_sizes
    taken = np.zeros(len(sizes), dtype=np.int64)
    for m in r.history:
        taken[m["party_signals"]["party"]] += 1
    assert len(set(taken.tolist())) > 1 and len(set(sizes.tolist())) > 1
    truth = example_epsilon_truth(1.1, BATCH, sizes, EPOCHS * np.ceil(sizes / BATCH), taken)
    assert r.privacy["example_epsilon"] == pytest.approx(truth, rel=1e-9)
    assert (np.ceil(sizes / BATCH) > 2).all()  # so one step per epoch would count far too few


# ---------------------------------------------------------------------------- Opacus engine
def opacus_config(z: float) -> dict:
    return make_config(
        run={"rounds": 1},
        data={"num_parties": 2, "max_examples": 200},  # 80 training rows each: 5 Poisson steps of 16
        model={"kind": "cnn"},
        strategy={"lr": LR, "batch_size": BATCH, "local_epochs": 1},
        privacy={
            "example_noise_multiplier": z,
            "example_clip_norm": CLIP,
            "example_dp_engine": "opacus",
            "simulation": True,  # Opacus's noise is keyed torch randomness: simulation only
        },
    )


@pytest.fixture(scope="module")
def opacus_runs():
    pytest.importorskip("opacus")
    return run(opacus_config(Z), write=False), run(opacus_config(0.0), write=False)


@pytest.mark.slow
def test_opacus_engine_example_epsilon_equals_dp_accounting_of_its_poisson_steps(opacus_runs):
    noisy, _ = opacus_runs
    sizes = build_data(as_config(opacus_config(Z))).train_sizes
    per_round = np.floor(sizes / BATCH)  # Opacus: int(1 / q) Poisson steps per epoch, q = B / n
    assert noisy.history[-1]["mean_local_steps"] == per_round.mean()
    truth = example_epsilon_truth(Z, BATCH, sizes, per_round, np.ones(len(sizes)))
    assert noisy.privacy["example_epsilon"] == pytest.approx(truth, rel=1e-9)


@pytest.mark.slow
def test_opacus_engine_adds_noise_of_std_zC_over_B_per_step(opacus_runs):
    """Batches come from their own seeded stream, so z = 0 replays the same batches without noise."""
    noisy, clean = opacus_runs
    sizes = build_data(as_config(opacus_config(Z))).train_sizes.astype(np.float64)
    weights = sizes / sizes.sum()
    per_round = np.floor(sizes / BATCH)
    expected = Z * CLIP / BATCH * math.sqrt(float((weights**2 * per_round).sum()))
    change = model_change_per_lr(noisy, clean, LR)  # ~9,900 coordinates
    assert change.std() == pytest.approx(expected, rel=0.06)
