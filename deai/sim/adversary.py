"""The simulated attacker: it controls the malicious parties' data and rewrites their updates in transit.

It is omniscient, the strongest attacker of the attack papers: it reads the round's honest updates too
(ALIE, IPM, min-max), which in deployment means colluding parties that see the other parties' updates.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from deai.attacks import Attack, AttackContext
from deai.evaluation import EvalCounts
from deai.messages import Failure, TrainTask, UpdateBatch
from deai.party.data import PartyShards
from deai.rng import Purpose, key
from deai.transport.base import Transport


class Adversary:
    """An attack and the parties it controls (``malicious``: bool per global party id)."""

    def __init__(self, attack: Attack, malicious: np.ndarray, seed: int) -> None:
        self.attack, self.malicious, self.seed = attack, np.asarray(malicious, dtype=bool), seed

    def poison(self, shards: PartyShards) -> PartyShards:
        """A copy of ``shards`` whose malicious parties' training rows went through ``poison_data``."""
        x, y = shards.x_train.copy(), shards.y_train.copy()
        for j, p in enumerate(shards.ids):
            if not self.malicious[p]:
                continue
            lo, hi = shards.train_offsets[j], shards.train_offsets[j + 1]
            party_seed = int(key(self.seed, 0, Purpose.ATTACK, int(p)) % np.uint64(2**31))
            x[lo:hi], y[lo:hi] = self.attack.poison_data(
                x[lo:hi], y[lo:hi], shards.num_classes, shards.image_shape, party_seed
            )
        out = PartyShards(
            shards.ids, x, y, shards.train_offsets, shards.x_test, shards.y_test, shards.test_offsets,
            shards.num_classes, shards.image_shape,
        )  # fmt: skip
        return out

    def craft(
        self, batch: UpdateBatch, task: TrainTask, num_classes: int, image_shape: tuple[int, ...] | None
    ) -> UpdateBatch:
        mal = self.malicious[batch.party_ids]
        if not mal.any():
            return batch
        ctx = AttackContext(
            seed=self.seed,
            round=task.round,
            party_ids=batch.party_ids,
            malicious=mal,
            global_params=task.params,
            weights=batch.weights,
            num_classes=num_classes,
            image_shape=image_shape,
        )
        return batch.with_deltas(self.attack.craft(batch.deltas, ctx))


class AdversarialTransport:
    """A transport whose malicious parties' updates the adversary rewrites before the server sees them."""

    def __init__(
        self, inner: Transport, adversary: Adversary, num_classes: int, image_shape: tuple[int, ...] | None
    ) -> None:
        self.inner, self.adversary = inner, adversary
        self.num_classes, self.image_shape = num_classes, image_shape
        self._task: TrainTask | None = None

    def dispatch(self, task: TrainTask) -> None:
        self._task = task
        self.inner.dispatch(task)

    def collect(self) -> Iterator[UpdateBatch | Failure]:
        """Failures pass through; the round's updates come as one crafted batch, since an omniscient
        attack reads every honest row of the round (asynchronous rows are crafted one by one)."""
        batches: list[UpdateBatch] = []
        for item in self.inner.collect():
            if isinstance(item, Failure):
                yield item
            elif len(item) == 1 and item.arrival is not None and self._task is not None and self._is_async():
                yield self.adversary.craft(item, self._task, self.num_classes, self.image_shape)
            else:
                batches.append(item)
        if batches:
            yield self.adversary.craft(
                UpdateBatch.concat(batches), self._task, self.num_classes, self.image_shape
            )

    def _is_async(self) -> bool:
        return bool(getattr(self.inner, "asynchronous", False))

    def evaluate(self, params: np.ndarray) -> EvalCounts:
        return self.inner.evaluate(params)

    def close(self) -> None:
        self.inner.close()
