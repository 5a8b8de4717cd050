"""The simulated attacker: it controls the malicious parties' data and rewrites their updates in transit.

It is omniscient, the strongest attacker of the attack papers: it reads the round's honest updates too
(ALIE, IPM, min-max), which in deployment means colluding parties that see the other parties' updates.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np

from deai.aggregate.base import traits
from deai.attacks import Attack, RoundContext
from deai.attacks.adaptive import DEFENCE
from deai.evaluation import EvalCounts
from deai.messages import TrainTask, UpdateBatch
from deai.party.data import PartyShards
from deai.party.program import PartyProgram
from deai.rng import Purpose, key


class Adversary:
    """An attack and the parties it controls (``malicious``: bool per global party id)."""

    def __init__(self, attack: Attack, malicious: np.ndarray, seed: int) -> None:
        self.attack, self.malicious, self.seed = attack, np.asarray(malicious, dtype=bool), seed
        # what a defence-aware attacker knows: the aggregation rule, and the signals the server gives it
        # (FLTrust's root update: the strongest attacker of FLTrust's paper knows the root data)
        self.defence: object | None = None
        self.defence_signals: Callable[[int, np.ndarray], dict[str, np.ndarray]] | None = None

    def _probe(self, task: TrainTask, batch: UpdateBatch) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """``probe(updates, weights)``: the defence's output on a candidate round, on a copy of the rule."""
        rule, stateful = self.defence, traits(self.defence).stateful
        signals = {} if self.defence_signals is None else self.defence_signals(task.round, batch.steps)

        def probe(updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
            ctx = RoundContext(
                self.seed, task.round, batch.party_ids, steps=batch.steps, signals=dict(signals)
            )
            return (copy.deepcopy(rule) if stateful else rule)(updates, weights, ctx)

        return probe

    def poison(self, shards: PartyShards) -> PartyShards:
        """A copy of ``shards`` whose malicious parties' training rows went through ``poison_data``."""
        x, y = shards.x_train.copy(), shards.y_train.copy()
        for j in np.flatnonzero(self.malicious[shards.ids]):
            lo, hi = shards.train_offsets[j], shards.train_offsets[j + 1]
            party_seed = int(key(self.seed, 0, Purpose.ATTACK, int(shards.ids[j])) % np.uint64(2**31))
            x[lo:hi], y[lo:hi] = self.attack.poison_data(
                x[lo:hi], y[lo:hi], shards.num_classes, shards.image_shape, party_seed
            )
        return dataclasses.replace(shards, x_train=x, y_train=y)

    def craft(
        self, batch: UpdateBatch, task: TrainTask, num_classes: int, image_shape: tuple[int, ...] | None
    ) -> UpdateBatch:
        mal = self.malicious[batch.party_ids]
        if not mal.any():
            return batch
        ctx = RoundContext(
            seed=self.seed,
            round=task.round,
            party_ids=batch.party_ids,
            malicious=mal,
            global_params=task.params,
            weights=batch.weights,
            num_classes=num_classes,
            image_shape=image_shape,
        )
        if self.defence is not None:
            ctx.extra[DEFENCE] = self._probe(task, batch)
        return batch.with_deltas(self.attack.craft(batch.deltas, ctx))


class AdversarialParties:
    """The party program of a federation some of whose parties the adversary controls.

    Honest and malicious parties train alike (data poisoning happened on their rows already); the
    adversary then rewrites the malicious rows, after their client transforms and before anything
    leaves the party side: so under secure aggregation a crafted update is what gets masked, as it
    would be. The in-process transport owns this wrapper in place of the honest program.
    """

    def __init__(
        self, party: PartyProgram, adversary: Adversary, num_classes: int, image_shape: tuple[int, ...] | None
    ) -> None:
        self.party, self.adversary = party, adversary
        self.num_classes, self.image_shape = num_classes, image_shape

    def train(
        self, task: TrainTask, party_ids: np.ndarray, step_budget: np.ndarray | None = None
    ) -> UpdateBatch:
        batch = self.party.train(task, party_ids, step_budget)
        return self.adversary.craft(batch, task, self.num_classes, self.image_shape)

    def evaluate(self, params: np.ndarray) -> EvalCounts:
        return self.party.evaluate(params)

    def declines(self, party_ids: np.ndarray) -> np.ndarray:
        return self.party.declines(party_ids)

    def close(self) -> None:
        self.party.close()
