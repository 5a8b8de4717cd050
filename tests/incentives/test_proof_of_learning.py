"""Proof-of-learning: honest training always verifies; each spoofing strategy is caught."""

import numpy as np
import pytest

from deai.data.datasets import load_dataset
from deai.incentives.proof_of_learning import (
    SPOOFERS,
    Job,
    Proof,
    honest_training,
    run_segment,
    verify_proof,
    weights_hash,
)
from deai.models import LogisticRegression


def job(seed, steps=200, every=5):
    ds = load_dataset("digits")
    model = LogisticRegression(ds.x.shape[1], ds.num_classes)
    rows = np.random.default_rng(seed).permutation(len(ds.y))[:600]
    return Job(model, model.init_params(seed), ds.x[rows], ds.y[rows], steps, lr=0.1, seed=seed, every=every)


def test_training_is_bitwise_reproducible_so_the_tolerance_is_zero():
    j = job(0)
    a, b = honest_training(j), honest_training(j)
    assert a.hashes == b.hashes
    assert weights_hash(run_segment(j, a.checkpoints[7], 7)) == a.hashes[8]


@pytest.mark.parametrize("seed", range(10))
def test_honest_providers_are_never_rejected(seed):
    j = job(seed)
    verdict = verify_proof(j, honest_training(j), segments=4, seed=1000 + seed)
    assert verdict.accepted, verdict.reason
    assert verdict.steps_rerun == 4 * j.every  # 4 of 40 segments: a tenth of the training


@pytest.mark.parametrize("name", list(SPOOFERS))
def test_every_spoofing_strategy_is_caught(name):
    caught = 0
    for seed in range(10):
        j = job(seed)
        proof = SPOOFERS[name](j, np.random.default_rng(seed), honest_training(j))
        caught += not verify_proof(j, proof, segments=8, seed=2000 + seed).accepted
    assert caught == 10


def test_a_proof_that_does_not_fit_its_job_is_refused_before_any_re_execution():
    j = job(0)
    honest = honest_training(j)
    short = Proof(honest.hashes[:-1], honest.final, honest.checkpoints)
    assert "needs 41" in verify_proof(j, short, 4, 0).reason
    moved = Proof(honest.hashes, honest.final + 1, honest.checkpoints)
    assert "final weights" in verify_proof(j, moved, 4, 0).reason
    swapped = Proof(honest.hashes, honest.final, [c + 1 for c in honest.checkpoints])
    verdict = verify_proof(j, swapped, 4, 0)
    assert not verdict.accepted and "not the one committed" in verdict.reason and verdict.steps_rerun == 0
    with pytest.raises(ValueError, match="multiple of every"):
        Job(j.model, j.params, j.x, j.y, steps=7, every=5)
