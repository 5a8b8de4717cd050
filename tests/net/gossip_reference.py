"""An independent, in-process reference of decentralized gossip training: every peer in one loop.

It uses only the party program (local training) and the mixing math of ``deai.net.gossip``, not the peer
node, its DHT, streams or round loop, so a networked run of real peer processes that reaches exactly
these models has moved every model correctly between processes.
"""

from __future__ import annotations

import numpy as np

from deai.engine.api import build_data, build_model
from deai.engine.assembly import task_strategy
from deai.evaluation import evaluation_counts
from deai.messages import TrainTask
from deai.net.gossip import metropolis_weights, mix, round_graph
from deai.party import PartyProgram, PartyShards


def gossip_reference(cfg, byzantine=None, scale=10.0, on_round=None):
    """Final models of every peer; ``byzantine`` sends ``x - scale * its last local step`` each round;
    ``on_round(r, models)`` sees every round's models."""
    fed = build_data(cfg)
    model = build_model(cfg, fed)
    strategy, _ = task_strategy(cfg, fed.num_parties)
    party = PartyProgram(model, PartyShards.from_federation(fed), strategy.transforms)
    n, seed, net = fed.num_parties, cfg.run.seed, cfg.network
    sizes = fed.train_sizes.astype(np.float64)
    weight = sizes / sizes.mean() if net.gossip_weighting == "examples" else np.ones(n)
    x = np.stack([model.init_params(seed)] * n)
    last = np.zeros(x.shape[1], np.float32)
    for r in range(1, cfg.run.rounds + net.consensus_rounds + 1):
        y, sent = x.copy(), x.copy()
        for i in range(n):
            if r <= cfg.run.rounds:
                task = TrainTask(r, r - 1, x[i], strategy.local, seed, np.array([i]))
                step = (party.train(task, np.array([i])).deltas[0] * weight[i]).astype(np.float32)
                y[i] = x[i] + step
                if i == byzantine:
                    last = step
            sent[i] = y[i] if i != byzantine else (x[i] - scale * last).astype(np.float32)
        graph = round_graph(seed, r, n, net.gossip_graph)
        rule, f = net.gossip_rule, cfg.strategy.f_max
        x = np.stack(
            [
                mix(y[i], {j: sent[j] for j in graph[i]}, metropolis_weights(i, graph), rule, f)
                for i in range(n)
            ]
        )
        if on_round is not None:
            on_round(r, x)
    scores = [evaluation_counts(model, x[i], fed.x_test, fed.y_test).scores()["accuracy"] for i in range(n)]
    return x, np.array(scores)
