"""The defence-tailored attack (Shejwalkar and Houmansadr 2021, AGR-tailored): its search against brute
force, and the simulation handing it a probe that never changes the real rule."""

import numpy as np
import pytest

from deai.aggregate import make_aggregator
from deai.attacks import make_attack
from deai.attacks.adaptive import DEFENCE, tailored_gamma
from deai.attacks.min_max import perturbation_vector
from deai.context import RoundContext


def _round(n=30, dim=40, bad=9, seed=1):
    rng = np.random.default_rng(seed)
    u = (1.0 + rng.standard_normal((n, dim))).astype(np.float32)
    malicious = np.zeros(n, dtype=bool)
    malicious[:bad] = True
    return u, malicious


@pytest.mark.parametrize("rule", ["norm_bound", "trimmed_mean", "median", "dnc"])
def test_the_search_finds_nearly_the_brute_force_best_gamma(rule):
    u, malicious = _round()
    defence = make_aggregator(rule, {}, num_parties=30, f_max=0.3)
    honest = u[~malicious]
    mean = honest.mean(axis=0, dtype=np.float64)
    p = perturbation_vector(honest, "unit_vec")
    ctx = RoundContext(seed=0, round=1, party_ids=np.arange(30))

    def deviation(gamma):
        trial = u.copy()
        trial[malicious] = (mean + gamma * p).astype(np.float32)
        return np.linalg.norm(defence(trial, np.ones(30), ctx) - mean)

    gamma = tailored_gamma(u, malicious, np.ones(30), mean, p, lambda x, w: defence(x, w, ctx))
    brute = max(deviation(g) for g in np.geomspace(1e-3, 1e4, 1500))
    assert deviation(gamma) >= 0.97 * brute


def test_against_the_plain_mean_it_pushes_as_far_as_the_search_reaches():
    u, malicious = _round()
    mean = u[~malicious].mean(axis=0, dtype=np.float64)
    p = perturbation_vector(u[~malicious], "unit_vec")
    rule = make_aggregator("mean", {}, num_parties=30)
    ctx = RoundContext(party_ids=np.arange(30))
    small = tailored_gamma(u, malicious, np.ones(30), mean, p, lambda x, w: rule(x, w, ctx))
    from deai.attacks.min_max import largest_gamma

    assert small >= 2.0**9 * largest_gamma(u[~malicious], p, "min_max")  # the top of the grid


def test_the_attack_needs_a_probe_and_probing_leaves_a_stateful_rule_unchanged():
    u, malicious = _round()
    attack = make_attack("adaptive")
    ctx = RoundContext(seed=0, round=1, party_ids=np.arange(30), malicious=malicious, weights=np.ones(30))
    with pytest.raises(ValueError, match="defence it is tailored to"):
        attack.craft(u, ctx)
    rule = make_aggregator("centered_clipping", {}, num_parties=30)
    rule(u, np.ones(30), RoundContext(party_ids=np.arange(30)))
    before = rule.state()["center"].copy()
    import copy

    ctx.extra[DEFENCE] = lambda x, w: copy.deepcopy(rule)(x, w, RoundContext(party_ids=np.arange(30)))
    out = attack.craft(u, ctx)
    np.testing.assert_array_equal(rule.state()["center"], before)
    np.testing.assert_array_equal(out[~malicious], u[~malicious])
    assert ctx.extra["adaptive_gamma"] > 0


def test_an_adaptive_attack_runs_through_the_engine_against_fltrust_and_krum():
    from deai.config import load_config
    from deai.engine.api import run

    for defence in ("fltrust", "krum"):
        cfg = load_config("examples/robustness_digits.toml").with_sections(
            run={"rounds": 2},
            data={"num_parties": 20},
            attack={"kind": "adaptive", "fraction": 0.2},
            strategy={"aggregator": defence, "f_max": 0.2},
        )
        assert 0 < run(cfg, write=False).final_accuracy <= 1
