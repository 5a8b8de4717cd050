"""An edge aggregator of a two-level tree: a party to the top aggregator, an aggregator to its own parties.

Toward its parent it is a :class:`~deai.net.party_node.PartyNode` whose "party program" is
:class:`EdgeProgram`: asked to train, it asks its own parties (over its own gRPC hub), validates what
comes back, aggregates it with the edge's rule (``network.edge_aggregator``: a robust rule, the mean, or
``secagg`` so the edge never sees one of its parties' updates) and answers with one update whose weight
is the sum of its parties' weights. The top's mean of the edges' weighted means is then the weighted
mean over every party (equal to the flat star up to float rounding; tested). Asked to evaluate, it sums
its parties' counts. Everything a party node keeps (answered rounds, the reply re-sent byte for byte to a
restarted top) it keeps too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deai.aggregate.base import traits
from deai.context import RoundContext
from deai.evaluation import EvalCounts
from deai.messages import Failure, TrainTask, UpdateBatch
from deai.net.star_transport import StarTransport
from deai.verify.validation import validate_updates


class NoUpdate(Exception):
    """Nothing to send upward this round (no party below answered, or every update was rejected)."""


class _Held:
    def __init__(self, index: int) -> None:
        self.ids = np.array([index], dtype=np.int64)


class EdgeProgram:
    """What a party node drives, implemented by asking the edge's own parties."""

    def __init__(
        self,
        index: int,
        children: list[int],
        model: Any,
        rule: Any,
        transport: StarTransport,
        cfg: Any,
        log: Any,
    ) -> None:
        self.shards, self.model, self.rule, self.transport = _Held(index), model, rule, transport
        self.children = np.array(sorted(children), dtype=np.int64)
        self.cfg, self.log = cfg, log
        self.private = traits(rule).private
        self.num_classes = transport.num_classes

    # the party program's interface, as PartyNode uses it
    def declines(self, party_ids: np.ndarray) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)  # each party below enforces its own budget

    def spent_epsilon(self) -> np.ndarray:
        return np.zeros(1)

    def state_tree(self) -> dict[str, Any]:
        return {"edge": np.array(int(self.shards.ids[0]))}

    def load_tree(self, tree: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        self.transport.close()

    def evaluate(self, params: np.ndarray) -> EvalCounts:
        counts = self.transport.evaluate(params)
        if counts is None:
            zero = np.zeros(self.num_classes)
            return EvalCounts(zero, zero.astype(np.int64), 0.0)
        return counts

    def train(
        self, task: TrainTask, party_ids: np.ndarray, step_budget: np.ndarray | None = None
    ) -> UpdateBatch:
        if task.withhold:
            raise ValueError("a private sum at the top of a tree is not supported; put secagg at the edges")
        r = task.round
        below = TrainTask(
            round=r, version=task.version, params=task.params, spec=task.spec, seed=task.seed,
            party_ids=self.children, withhold=self.private,
        )  # fmt: skip
        self.transport.dispatch(below)
        batches, failures = [], []
        for item in self.transport.collect():
            (failures if isinstance(item, Failure) else batches).append(item)
        lost = {f.reason: len(f.party_ids) for f in failures}
        batch = UpdateBatch.concat(batches) if batches else None
        dim = len(task.params)
        if batch is None or not len(batch):
            self.log("edge_round", round=r, accepted=0, lost=lost)
            raise NoUpdate("no party below this edge answered")
        if self.private:
            keep = np.ones(len(batch), dtype=bool)
        else:
            check = validate_updates(
                batch.deltas, batch.party_ids, batch.round, r, max_norm=self.cfg.validation.max_update_norm
            )
            keep = check.accepted
            if check.reasons:
                self.log(
                    "edge_rejected",
                    round=r,
                    reasons={int(batch.party_ids[i]): w for i, w in check.reasons.items()},
                )
        if not keep.any():
            raise NoUpdate("every update below this edge was rejected")
        kept = batch.take(keep)
        ctx = RoundContext(self.cfg.run.seed, r, kept.party_ids, steps=kept.steps)
        if self.private:
            update = self.rule.aggregate_over(self.transport.exchange, dim, kept.weights, ctx)
        else:
            update = self.rule(kept.deltas, kept.weights, ctx)
        loss = kept.metrics.get("train_loss")
        mean_loss = (
            float(np.average(loss, weights=kept.weights)) if loss is not None and len(kept) else np.nan
        )
        self.log("edge_round", round=r, accepted=len(kept), lost=lost)
        steps = int(round(float(kept.steps.mean()))) if len(kept) else 0
        return _one(
            self.shards.ids[0], r, task.version, update[None, :], float(kept.weights.sum()), steps, mean_loss
        )


def _one(
    index: int, r: int, version: int, delta: np.ndarray, weight: float, steps: int, loss: float
) -> UpdateBatch:
    return UpdateBatch(
        party_ids=np.array([index], dtype=np.int64),
        round=np.array([r], dtype=np.int64),
        base_version=np.array([version], dtype=np.int64),
        deltas=np.asarray(delta, dtype=np.float32),
        weights=np.array([weight]),
        steps=np.array([steps], dtype=np.int64),
        metrics={"train_loss": np.array([loss])},
    )
