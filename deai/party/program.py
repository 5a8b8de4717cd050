"""The party program: local training on the party's own rows, its client transforms, its control variate.

It answers a :class:`~deai.messages.TrainTask` with an :class:`~deai.messages.UpdateBatch` and never
sees another party's update. In the simulator one program holds every party and trains them in one
batched call; on a node it holds one party. Random streams are keyed by the party's global id, so a
party trains identically wherever its rows are stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deai.evaluation import EvalCounts, evaluation_counts
from deai.messages import TrainTask, UpdateBatch
from deai.models.base import Model
from deai.party.backends import Backend, TrainJob, make_backend
from deai.party.budget import PartyBudget
from deai.party.data import PartyShards
from deai.train import LocalSpec, train_parties
from deai.train.scaffold import party_control_update
from deai.transforms import Chain, RoundContext, chain
from deai.verify.validation import row_norms


class PartyProgram:
    """Local training, client transforms (clip, DP noise share), SCAFFOLD's ``c_i``, for the parties held.

    Parameters
    ----------
    model, shards : the model and the rows of the parties this program holds.
    transforms : client transforms applied to each update before it is sent.
    scaffold : keep SCAFFOLD control variates ``c_i`` (option II of Karimireddy et al. 2020).
    backend, workers, example_dp : where local training runs (see :func:`deai.party.backends.make_backend`).
    """

    def __init__(
        self,
        model: Model,
        shards: PartyShards,
        transforms: Chain | None = None,
        *,
        scaffold: bool = False,
        backend: str = "vectorized",
        workers: int = 1,
        example_dp: tuple[float, float] | None = None,
        budget: PartyBudget | None = None,
    ) -> None:
        self.model, self.shards = model, shards
        self.budget = budget  # each party's own epsilon limit (privacy.party_budget_epsilon)
        self.transforms = transforms if transforms is not None else chain()
        self._transform_state = self.transforms.init(model.layout.dim)
        self.backend_name, self.workers, self.example_dp = backend, workers, example_dp
        n, dim = len(shards.ids), model.layout.dim
        self.trained_rounds = np.zeros(n, dtype=np.int64)  # rounds each held party trained in
        self.c_parties = np.zeros((n, dim), np.float32) if scaffold else None
        self._backend: Backend | None = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            s = self.shards
            self._backend = make_backend(
                self.backend_name,
                self.model,
                s.x_train,
                s.y_train,
                s.train_offsets,
                self.workers,
                self.example_dp,
            )
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def declines(self, party_ids: np.ndarray) -> np.ndarray:
        """The ids among ``party_ids`` that refuse to train: one more round would pass their own budget."""
        party_ids = np.asarray(party_ids, dtype=np.int64)
        if self.budget is None or not len(party_ids):
            return np.zeros(0, dtype=np.int64)
        return party_ids[self.budget.refuses(self.trained_rounds[self.shards.local(party_ids)])]

    def spent_epsilon(self) -> np.ndarray:
        """``[held parties]`` epsilon each has spent by its own count (all zero without a party budget)."""
        if self.budget is None:
            return np.zeros(len(self.trained_rounds))
        counts, where = np.unique(self.trained_rounds, return_inverse=True)  # one accountant call per count
        return np.array([self.budget.spent(int(k)) for k in counts])[where]

    def train(
        self, task: TrainTask, party_ids: np.ndarray, step_budget: np.ndarray | None = None
    ) -> UpdateBatch:
        """Train ``party_ids`` (held here) from the task's model; ``step_budget`` caps steps (a deadline)."""
        party_ids = np.asarray(party_ids, dtype=np.int64)
        local = self.shards.local(party_ids)
        if len(self.declines(party_ids)):
            raise ValueError("a party asked to train past its own privacy budget; ask declines() first")
        correction = None
        if self.c_parties is not None:
            if task.control is None:
                raise ValueError(
                    "a SCAFFOLD party needs the server control variate in the task (task.control)"
                )
            correction = task.control[None, :] - self.c_parties[local]
        job = TrainJob(
            local, task.params, task.spec, task.seed, task.round, step_budget, correction, rng_ids=party_ids
        )
        res = self.backend.train(job)
        self.trained_rounds[local] += 1
        control_deltas = None
        if self.c_parties is not None:
            old = self.c_parties[local]
            new = party_control_update(old, task.control, res.deltas, res.steps, task.spec.lr)
            self.c_parties[local] = new
            control_deltas = new - old
        raw_norm = row_norms(res.deltas)
        deltas, self._transform_state = self.transforms.apply(
            res.deltas, self._transform_state, RoundContext(task.seed, task.round, party_ids)
        )
        P = len(party_ids)
        return UpdateBatch(
            party_ids=party_ids,
            round=np.full(P, task.round, dtype=np.int64),
            base_version=np.full(P, task.version, dtype=np.int64),
            deltas=deltas,
            weights=self.shards.train_sizes[local].astype(np.float64),
            steps=res.steps,
            metrics={"train_loss": res.train_loss, "raw_norm": raw_norm},
            control_deltas=control_deltas,
        )

    def evaluate(self, params: np.ndarray) -> EvalCounts:
        """Counts of the model ``params`` on every held party's own test rows (summed over them)."""
        s = self.shards
        return evaluation_counts(self.model, params, s.x_test, s.y_test)

    # -- party-side bookkeeping ---------------------------------------------------------------
    def state_tree(self) -> dict[str, Any]:
        """The parties' own state, named: rounds each trained in, and SCAFFOLD's ``c_i``."""
        return {
            "trained_rounds": self.trained_rounds,
            "scaffold": None if self.c_parties is None else {"c_parties": self.c_parties},
            "transforms": self.transforms.to_tree(self._transform_state),  # error-feedback residuals
        }

    def load_tree(self, tree: dict[str, Any]) -> None:
        self.trained_rounds = np.asarray(tree["trained_rounds"]).astype(np.int64)
        if self.c_parties is not None:
            self.c_parties = np.asarray(tree["scaffold"]["c_parties"]).astype(np.float32)
        if "transforms" in tree:
            self._transform_state = self.transforms.from_tree(tree["transforms"], self._transform_state)

    def personalize(self, params: np.ndarray, spec: LocalSpec, seed: int, round_: int) -> dict[str, float]:
        """Fine-tune ``params`` on each held party's own data; accuracy on each party's own test split.

        Returns test-size-weighted accuracy of the global model and of the fine-tuned models, both on the
        parties' own test rows, so the two numbers are directly comparable.
        """
        s, w = self.shards, params
        held = np.flatnonzero(s.test_sizes > 0)
        correct_g = correct_p = 0
        for chunk in np.array_split(held, max(1, len(held) // 256)):
            res = train_parties(
                self.model, s.x_train, s.y_train, s.train_offsets, chunk, w, spec, seed, round_,
                rng_ids=s.ids[chunk],
            )  # fmt: skip
            sizes = s.test_sizes[chunk]
            pos = np.arange(int(sizes.max()))[None, :]
            valid = pos < sizes[:, None]
            rows = np.where(valid, s.test_offsets[chunk][:, None] + pos, 0)
            xb, yb = s.x_test[rows], s.y_test[rows]
            pred_p = self.model.logits(w[None, :] + res.deltas, xb).argmax(axis=-1)
            pred_g = self.model.logits(np.repeat(w[None, :], len(chunk), axis=0), xb).argmax(axis=-1)
            correct_p += int(((pred_p == yb) & valid).sum())
            correct_g += int(((pred_g == yb) & valid).sum())
        total = int(s.test_sizes[held].sum())
        return {"global_on_party_tests": correct_g / total, "personalized": correct_p / total}
