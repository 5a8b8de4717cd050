"""The gossip math against closed forms and brute force, and robust gossip against a Byzantine peer."""

import numpy as np
import pytest
from scipy import stats

from deai.config import parse_config
from deai.net.gossip import metropolis_weights, mix, round_graph, weighted_quantile

from .gossip_reference import gossip_reference


@pytest.mark.parametrize("n", [2, 5, 10, 33])
@pytest.mark.parametrize("kind", ["ring_matching", "complete"])
def test_each_rounds_graph_is_symmetric_and_connected_and_its_weights_doubly_stochastic(n, kind):
    for r in range(1, 6):
        g = round_graph(3, r, n, kind)
        assert all(i not in g[i] and all(i in g[j] for j in g[i]) for i in range(n))
        seen, todo = {0}, [0]
        while todo:
            for j in g[todo.pop()] - seen:
                seen.add(j)
                todo.append(j)
        assert seen == set(range(n))
        W = np.zeros((n, n))
        for i in range(n):
            for j, w in metropolis_weights(i, g).items():
                W[i, j] = w
            W[i, i] = 1 - W[i].sum()
        np.testing.assert_allclose(W, W.T)
        np.testing.assert_allclose(W.sum(axis=0), 1)
        assert (W >= 0).all()
    assert round_graph(3, 1, n, kind) == round_graph(3, 1, n, kind)  # every peer derives the same graph


def test_plain_gossip_is_the_weighted_average_and_a_missing_neighbour_leaves_its_weight_home():
    rng = np.random.default_rng(0)
    own, a, b = (rng.normal(size=20).astype(np.float32) for _ in range(3))
    w = {1: 0.25, 2: 0.25}
    np.testing.assert_allclose(mix(own, {1: a, 2: b}, w), 0.5 * own + 0.25 * a + 0.25 * b, rtol=1e-6)
    np.testing.assert_allclose(mix(own, {1: a}, w), 0.75 * own + 0.25 * a, rtol=1e-6)
    np.testing.assert_array_equal(mix(own, {}, w), own)


def test_clipped_gossip_bounds_each_neighbours_pull_by_the_radius():
    own = np.zeros(4, np.float32)
    near, far = np.array([1, 0, 0, 0], np.float32), np.array([0, 100, 0, 0], np.float32)
    out = mix(own, {1: near, 2: far}, {1: 0.3, 2: 0.3}, "clipped_gossip", f_max=0.25)
    # radius = the nearer neighbour's distance (1): the far one pulls by 0.3 * 1, not 0.3 * 100
    np.testing.assert_allclose(out, [0.3, 0.3, 0, 0], atol=1e-6)
    assert weighted_quantile(np.array([1.0, 5.0, 9.0]), np.ones(3), 0.75) == 5.0


def test_trimmed_gossip_is_scipys_trimmed_mean_and_screening_drops_the_outlier():
    rng = np.random.default_rng(1)
    own = rng.normal(size=30).astype(np.float32)
    got = {j: rng.normal(size=30).astype(np.float32) for j in range(1, 5)}
    w = dict.fromkeys(got, 0.2)
    stack = np.vstack([own, *got.values()])
    np.testing.assert_allclose(
        mix(own, got, w, "trimmed_mean", 0.25), stats.trim_mean(stack, 0.4, axis=0), rtol=1e-5
    )
    liar = {**got, 5: own + 1000}
    w5 = dict.fromkeys(liar, 1 / 6)
    np.testing.assert_allclose(mix(own, liar, w5, "screened_gossip"), mix(own, got, w5, "gossip"), rtol=1e-6)


def p2p_task(rule="gossip", graph="ring_matching", **over):
    cfg = {
        "run": {"name": "p2p", "rounds": 20, "seed": 7},
        "data": {"dataset": "digits", "num_parties": 5, "partition": "dirichlet", "alpha": 0.5},
        "strategy": {"lr": 0.3, "f_max": 0.25},
        "network": {"topology": "p2p", "gossip_rule": rule, "gossip_graph": graph},
    }
    for k, v in over.items():
        cfg[k].update(v)
    return parse_config(cfg)


@pytest.mark.slow
def test_screened_gossip_keeps_honest_peers_near_clean_while_plain_gossip_follows_a_byzantine_peer():
    _, clean = gossip_reference(p2p_task("gossip", "complete"))
    _, plain = gossip_reference(p2p_task("gossip", "complete"), byzantine=0)
    _, screened = gossip_reference(p2p_task("screened_gossip", "complete"), byzantine=0)
    honest = slice(1, None)
    assert clean.min() - plain[honest].min() > 0.03  # measured: 92.8% -> 83.6%
    assert clean.min() - screened[honest].min() < 0.03  # measured: 92.8% -> 91.6%
