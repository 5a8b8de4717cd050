"""Refereed disputes: bisection finds the one wrong step, and the referee re-executes only that step."""

import math

import numpy as np
import pytest

from deai.incentives.disputes import referee, settle, with_wrong_step
from deai.incentives.proof_of_learning import Proof, honest_training
from tests.incentives.test_proof_of_learning import job


@pytest.mark.parametrize("trial", range(20))
def test_the_referee_finds_a_planted_wrong_step_and_names_the_cheater(trial):
    j = job(trial, steps=512, every=1)
    honest = honest_training(j)
    rng = np.random.default_rng(trial)
    wrong_at = int(rng.integers(0, 512))
    cheat = with_wrong_step(j, honest, wrong_at, rng)
    first, second = (
        (("honest", honest), ("cheat", cheat)) if trial % 2 else (("cheat", cheat), ("honest", honest))
    )
    ruling = referee(j, first, second)
    assert ruling.diverged_at == wrong_at and ruling.liars == ("cheat",)
    assert ruling.comparisons <= 1 + math.ceil(math.log2(512)) and ruling.segments_rerun == 1


def test_agreeing_providers_cost_one_comparison_and_malformed_proofs_lose_outright():
    j = job(0, steps=64, every=1)
    honest = honest_training(j)
    assert referee(j, ("a", honest), ("b", honest_training(j))).liars == ()
    short = Proof(honest.hashes[:-1], honest.final, honest.checkpoints)
    assert referee(j, ("a", honest), ("b", short)).liars == ("b",)
    elsewhere = Proof(["0" * 64] + honest.hashes[1:], honest.final, honest.checkpoints)
    assert referee(j, ("a", elsewhere), ("b", honest)).liars == ("a",)


def test_a_provider_that_reveals_another_checkpoint_than_it_committed_cannot_win():
    j = job(1, steps=64, every=1)
    honest = honest_training(j)
    cheat = with_wrong_step(j, honest, 40, np.random.default_rng(0))
    cheat.checkpoints = [c + 1 for c in cheat.checkpoints]  # it reveals other weights than it committed
    ruling = referee(j, ("cheat", cheat), ("honest", honest))
    assert ruling.liars == ("cheat",) and ruling.diverged_at == 40


def test_three_providers_settle_on_the_honest_result_and_each_liar_is_named():
    j = job(2, steps=128, every=1)
    honest = honest_training(j)
    rng = np.random.default_rng(2)
    proofs = {"p1": honest, "p2": with_wrong_step(j, honest, 50, rng), "p3": honest_training(j)}
    result, rulings = settle(j, proofs)
    assert result == honest.hashes[-1]
    assert set(rulings) == {"p2"} and rulings["p2"].liars == ("p2",) and rulings["p2"].diverged_at == 50
    # two colluding liars outvote one honest provider, but the referee upholds the honest one
    liar = with_wrong_step(j, honest, 10, rng)
    result, rulings = settle(j, {"a": liar, "b": liar, "c": honest})
    assert result is None and rulings["c"].liars == ("a",)
