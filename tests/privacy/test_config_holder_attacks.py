"""Finding 1 of the privacy review as tests: an adversary who holds the task's config (seed included).

In ``privacy.simulation`` mode it regenerates the noise and the Poisson sample exactly (which shows the
attack is real and the tests can tell); in the default mode it cannot.
"""

from __future__ import annotations

import numpy as np
import pytest

from deai.engine.api import as_config, build_data, build_model, run
from deai.engine.participation import sample_parties
from deai.privacy.dp.mechanisms import CentralGaussianNoise, RingNoise
from deai.privacy.secagg import SecureAggregator
from deai.privacy.secagg.phases import PartyStages
from deai.transforms import ClipByNorm, RoundContext
from tests.conftest import make_config

Z, CLIP, PARTIES = 1.0, 1.0, 10


def central_config(simulation: bool) -> dict:
    # lr ~ 0: every update is ~0, so the round's model change is the released noise itself
    return make_config(
        run={"rounds": 1, "seed": 5},
        data={"num_parties": PARTIES},
        strategy={"lr": 1e-12},
        privacy={"mode": "central", "noise_multiplier": Z, "clip_norm": CLIP, "simulation": simulation},
    )


def released_noise(cfg: dict) -> np.ndarray:
    experiment = as_config(cfg)
    start = build_model(experiment, build_data(experiment)).init_params(experiment.run.seed)
    return run(cfg, write=False).params.astype(np.float64) - start


def regenerated_central_noise(cfg: dict, dim: int) -> np.ndarray:
    """What the adversary computes from the config alone: the keyed noise of round 1."""
    seed = cfg["run"]["seed"]
    mechanism = CentralGaussianNoise(Z, CLIP, PARTIES, simulation=True)
    return mechanism(np.zeros(dim), RoundContext(seed=seed, round=1, party_ids=np.zeros(0, np.int64)))


@pytest.mark.parametrize("simulation", [True, False])
def test_the_central_noise_cannot_be_regenerated_from_the_config_outside_simulation(simulation):
    cfg = central_config(simulation)
    noise = released_noise(cfg)
    sigma = Z * CLIP / PARTIES
    residual = noise - regenerated_central_noise(cfg, noise.size)
    if simulation:
        assert np.abs(residual).max() < 1e-6 * sigma  # the clipped mean is exposed
    else:
        assert residual.std() == pytest.approx(np.sqrt(2) * sigma, rel=0.1)  # two independent noises
        # independent draws over ~650 coordinates: |r| has sd ~0.04, so 0.25 is a 6-sigma bound (0.1 failed
        # about once in a hundred runs); regenerated noise would give r ~ 1
        assert abs(np.corrcoef(noise, noise - residual)[0, 1]) < 0.25


def test_two_runs_of_one_config_draw_different_noise_and_simulation_runs_repeat():
    assert not np.array_equal(released_noise(central_config(False)), released_noise(central_config(False)))
    np.testing.assert_array_equal(released_noise(central_config(True)), released_noise(central_config(True)))


def test_the_poisson_sample_cannot_be_regenerated_from_the_seed():
    keyed = sample_parties(7, 3, 5000, 0.1, None, True)
    np.testing.assert_array_equal(keyed, sample_parties(7, 3, 5000, 0.1, None, True))
    secure = sample_parties(7, 3, 5000, 0.1, None, True, secure=True)
    assert len(secure) == pytest.approx(500, abs=80)
    overlap = len(np.intersect1d(secure, keyed)) / len(secure)
    assert overlap == pytest.approx(0.1, abs=0.05)  # no better than chance


@pytest.mark.parametrize("simulation", [True, False])
def test_the_server_cannot_strip_the_parties_noise_shares_from_a_secure_sum_outside_simulation(simulation):
    """The reviewer, acting as the server, regenerated every party's distributed noise share and removed
    it from the sum. Here the server knows every public figure (weights, ring scale) and the seed."""
    n, dim, round_, seed = 20, 300, 4, 9
    rng = np.random.default_rng(0)
    ids = np.arange(n) + 100
    ctx = RoundContext(seed=seed, round=round_, party_ids=ids)
    updates, _ = ClipByNorm(CLIP).apply(rng.normal(size=(n, dim)).astype(np.float32), None, ctx)
    noise = RingNoise(Z, CLIP, n, simulation=simulation, seed=seed)
    agg = SecureAggregator(clip=CLIP)
    agg.noise_headroom = noise.headroom()
    stages = PartyStages({int(p): updates[i] for i, p in enumerate(ids)}, noise)
    mean = agg.aggregate_over(stages.answer, dim, np.ones(n), ctx)
    scale = agg.last_result.config.encoding.scale
    # the server's reconstruction: each party's keyed share, as the config lets anyone compute it
    keyed = RingNoise(Z, CLIP, n, simulation=True, seed=seed)
    shares = sum(keyed.draw(int(p), round_, 1.0 / n, scale, dim) for p in ids) / scale
    exact = updates.astype(np.float64).mean(axis=0)
    stripped = mean.astype(np.float64) - shares
    sigma_mean = Z * CLIP / n  # the noise std on the mean: z C on the sum
    if simulation:
        assert np.abs(stripped - exact).max() < 1e-3 * sigma_mean  # the individual noise is gone
    else:
        assert (stripped - exact).std() == pytest.approx(np.sqrt(2) * sigma_mean, rel=0.15)
    assert (mean - exact).std() == pytest.approx(
        sigma_mean, rel=0.15
    )  # the released sum is noised as planned
