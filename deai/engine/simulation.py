"""The round loop: plan participants, train locally, transform, aggregate, step the server.

Everything a round needs is either in the config or in the explicit state saved by
:meth:`Simulation.state_arrays`, and every random choice is keyed by (seed, round, party,
purpose), so a run resumed from a checkpoint is bit-identical to one never interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deai.aggregate import AggregationContext
from deai.config import ExperimentConfig
from deai.data.federated import FederatedData
from deai.engine.backends import Backend, TrainJob, make_backend
from deai.engine.participation import party_speeds, plan_round
from deai.engine.strategy import Strategy, build_strategy
from deai.models.base import Model
from deai.train import LocalSpec, planned_steps, train_parties
from deai.train.scaffold import ScaffoldControls
from deai.transforms import TransformContext

EVAL_CHUNK = 4096


def evaluate(model: Model, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean per-class recall) and mean cross-entropy on ``x, y``."""
    if len(y) == 0:
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "loss": float("nan")}
    num_classes = model.num_classes
    hits = np.zeros(num_classes)
    loss_sum = 0.0
    for s in range(0, len(y), EVAL_CHUNK):
        xb, yb = x[s : s + EVAL_CHUNK], y[s : s + EVAL_CHUNK]
        logits = model.logits(w[None, :], xb[None])[0].astype(np.float64)
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss_sum += float(-logp[np.arange(len(yb)), yb].sum())
        hits += np.bincount(yb[logits.argmax(axis=1) == yb], minlength=num_classes)
    support = np.bincount(y, minlength=num_classes)
    present = support > 0
    return {
        "accuracy": float(hits.sum() / len(y)),
        "balanced_accuracy": float((hits[present] / support[present]).mean()),
        "loss": loss_sum / len(y),
    }


@dataclass
class SimulationState:
    round: int  # rounds completed
    params: np.ndarray
    server_state: dict[str, np.ndarray]
    transform_state: Any = None
    wall_time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


class Simulation:
    """One federated training run over an in-memory federation."""

    def __init__(self, cfg: ExperimentConfig, fed: FederatedData, model: Model) -> None:
        self.cfg, self.fed, self.model = cfg, fed, model
        self.strategy: Strategy = build_strategy(
            cfg.strategy, np.bincount(fed.y_train, minlength=fed.num_classes)
        )
        seed = cfg.run.seed
        self.speeds = party_speeds(seed, fed.num_parties, cfg.participation.speed_sigma)
        self.planned = planned_steps(fed.train_sizes, self.strategy.local)
        self.controls = (
            ScaffoldControls(fed.num_parties, model.layout.dim) if self.strategy.control_variates else None
        )
        w0 = model.init_params(seed)
        self.state = SimulationState(
            round=0,
            params=w0,
            server_state=self.strategy.server_opt.init(len(w0)),
            transform_state=self.strategy.transforms.init(len(w0)),
        )
        self._backend: Backend | None = None

    # -- state ----------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to continue the run, as named arrays (for a checkpoint)."""
        arrays = {f"server_{k}": v for k, v in self.state.server_state.items()}
        arrays["round"] = np.array(self.state.round)
        arrays["wall_time_s"] = np.array(self.state.wall_time_s)
        if self.controls is not None:
            arrays.update(self.controls.state())
        return arrays

    def load_state(self, params: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        self.state.params = params.astype(np.float32)
        self.state.round = int(arrays["round"])
        self.state.wall_time_s = float(arrays["wall_time_s"])
        self.state.server_state = {
            k[len("server_") :]: v for k, v in arrays.items() if k.startswith("server_")
        }
        if self.controls is not None:
            self.controls.load(arrays)

    # -- rounds ---------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        if self._backend is None:
            f = self.fed
            self._backend = make_backend(
                self.cfg.run.backend, self.model, f.x_train, f.y_train, f.train_offsets, self.cfg.run.workers
            )
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def run_round(self) -> dict[str, Any]:
        """Advance one round and return its metrics line."""
        t0 = time.perf_counter()
        cfg, st, strat = self.cfg, self.state, self.strategy
        r = st.round + 1
        part = cfg.participation
        plan = plan_round(
            cfg.run.seed,
            r,
            self.fed.num_parties,
            self.planned,
            self.speeds,
            fraction=part.fraction,
            count=part.count,
            dropout_rate=part.dropout_rate,
            deadline=part.deadline,
            straggler_policy=part.straggler_policy,
        )
        ids = plan.participants
        metrics: dict[str, Any] = {
            "round": r,
            "sampled": len(plan.sampled),
            "participants": len(ids),
            "dropped": plan.dropped,
            "stragglers": plan.stragglers,
            "sim_time": plan.sim_time,
        }
        if len(ids):
            job = TrainJob(
                ids,
                st.params,
                strat.local,
                cfg.run.seed,
                r,
                plan.step_budget,
                None if self.controls is None else self.controls.correction(ids),
            )
            res = self.backend.train(job)
            if self.controls is not None:
                self.controls.update(ids, res.deltas, res.steps, strat.local.lr)
            deltas, st.transform_state = strat.transforms.apply(
                res.deltas, st.transform_state, TransformContext(cfg.run.seed, r, ids)
            )
            weights = self.fed.train_sizes[ids].astype(np.float64)
            ctx = AggregationContext(round=r, party_ids=ids, steps=res.steps)
            update = strat.aggregator(deltas, weights, ctx)
            st.params, st.server_state = strat.server_opt.step(st.params, update, st.server_state)
            metrics["train_loss"] = float(np.average(res.train_loss, weights=weights))
            metrics["update_norm_mean"] = float(np.linalg.norm(deltas, axis=1).mean())
            metrics["mean_local_steps"] = float(res.steps.mean())
        if not np.all(np.isfinite(st.params)):
            raise FloatingPointError(
                f"the global model became non-finite in round {r}; lower strategy.lr or strategy.server_lr"
            )
        if r % cfg.run.eval_every == 0 or r == cfg.run.rounds:
            metrics.update(evaluate(self.model, st.params, self.fed.x_eval, self.fed.y_eval))
        st.round = r
        st.wall_time_s += time.perf_counter() - t0
        metrics["wall_time_s"] = round(st.wall_time_s, 6)
        st.history.append(metrics)
        return metrics

    def run(self, on_round: Callable[[dict[str, Any]], None] | None = None) -> None:
        try:
            while self.state.round < self.cfg.run.rounds:
                m = self.run_round()
                if on_round is not None:
                    on_round(m)
        finally:
            self.close()

    # -- personalization ------------------------------------------------------------------
    def personalize(self, epochs: int) -> dict[str, float]:
        """Fine-tune the global model on each party's own data; accuracy on each party's own test split.

        Returns test-size-weighted accuracy of the global model and of the fine-tuned models,
        both on the parties' own test rows, so the two numbers are directly comparable.
        """
        f, w = self.fed, self.state.params
        ids = np.flatnonzero(f.test_sizes > 0)
        local = self.strategy.local
        spec = LocalSpec(
            epochs=epochs, batch_size=local.batch_size, lr=local.lr, class_weights=local.class_weights
        )
        correct_g = correct_p = 0
        for chunk in np.array_split(ids, max(1, len(ids) // 256)):
            res = train_parties(
                self.model,
                f.x_train,
                f.y_train,
                f.train_offsets,
                chunk,
                w,
                spec,
                self.cfg.run.seed,
                self.cfg.run.rounds + 1,
            )
            sizes = f.test_sizes[chunk]
            pos = np.arange(int(sizes.max()))[None, :]
            valid = pos < sizes[:, None]
            rows = np.where(valid, f.test_offsets[chunk][:, None] + pos, 0)
            xb, yb = f.x_test[rows], f.y_test[rows]
            W_local = w[None, :] + res.deltas
            pred_p = self.model.logits(W_local, xb).argmax(axis=-1)
            pred_g = self.model.logits(np.repeat(w[None, :], len(chunk), axis=0), xb).argmax(axis=-1)
            correct_p += int(((pred_p == yb) & valid).sum())
            correct_g += int(((pred_g == yb) & valid).sum())
        total = int(f.test_sizes[ids].sum())
        return {"global_on_party_tests": correct_g / total, "personalized": correct_p / total}
