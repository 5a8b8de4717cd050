"""The round loop: plan participants, train locally, transform, aggregate, step the server.

Everything a round needs is either in the config or in the explicit state saved by
:meth:`Simulation.state_arrays`, and every random choice is keyed by (seed, round, party,
purpose), so a run resumed from a checkpoint is bit-identical to one never interrupted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deai.aggregate import AggregationContext, make_aggregator
from deai.attacks import AttackContext, choose_malicious, make_attack
from deai.config import ConfigError, ExperimentConfig
from deai.data.federated import FederatedData
from deai.engine.backends import Backend, TrainJob, make_backend
from deai.engine.participation import RoundPlan, party_speeds, plan_round
from deai.engine.strategy import Strategy, build_strategy
from deai.models.base import Model
from deai.privacy.secagg.errors import SecAggError
from deai.rng import Purpose, key
from deai.train import LocalSpec, planned_steps, train_parties
from deai.train.scaffold import ScaffoldControls
from deai.transforms import TransformContext, chain
from deai.verify.validation import NON_FINITE, NORM_OVERFLOW, row_norms, validate_updates

log = logging.getLogger("deai.engine")

# Rejection reasons that mean an update could not be used at all (rather than failing a policy).
UNUSABLE = {NON_FINITE, NORM_OVERFLOW}

EVAL_CHUNK = 4096


def evaluate(model: Model, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean per-class recall) and mean cross-entropy on ``x, y``.

    The loss is ``inf`` when the model's logits overflow (a diverged model); the run loop stops on it.
    """
    if len(y) == 0:
        raise ValueError("the evaluation set is empty: set data.holdout_fraction or data.test_fraction")
    num_classes = model.num_classes
    hits = np.zeros(num_classes)
    loss_sum = 0.0
    for s in range(0, len(y), EVAL_CHUNK):
        xb, yb = x[s : s + EVAL_CHUNK], y[s : s + EVAL_CHUNK]
        logits = model.logits(w[None, :], xb[None])[0].astype(np.float64)
        if not np.isfinite(logits).all():
            return {"accuracy": 0.0, "balanced_accuracy": 0.0, "loss": float("inf")}
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
        gradient_fn = None
        if cfg.privacy.example_noise_multiplier is not None and cfg.privacy.example_dp_engine == "vectorized":
            from deai.privacy.dp.dpsgd import ExampleLevelDPSGD

            gradient_fn = ExampleLevelDPSGD(
                cfg.privacy.example_clip_norm, cfg.privacy.example_noise_multiplier, cfg.strategy.batch_size
            )
        self.strategy: Strategy = build_strategy(
            cfg.strategy, np.bincount(fed.y_train, minlength=fed.num_classes), gradient_fn
        )
        seed = cfg.run.seed
        self.speeds = party_speeds(seed, fed.num_parties, cfg.participation.speed_sigma)
        self.planned = planned_steps(fed.train_sizes, self.strategy.local)
        self.controls = (
            # c must average the c_i with the aggregate's own weights: DP-FedAvg's are uniform, the mean's
            # are example counts
            ScaffoldControls(
                fed.num_parties,
                model.layout.dim,
                weights=None if cfg.privacy.mode != "none" else fed.train_sizes,
            )
            if self.strategy.control_variates
            else None
        )
        if cfg.strategy.aggregator is not None:
            try:
                self.strategy.aggregator = make_aggregator(
                    cfg.strategy.aggregator, cfg.strategy.aggregator_options, num_parties=fed.num_parties
                )
            except (TypeError, ValueError) as err:
                raise ConfigError(f"strategy.aggregator_options: {err}") from None
        self.malicious = np.zeros(fed.num_parties, dtype=bool)
        self.attack = None
        self.train_fed = fed
        if cfg.attack.kind != "none":
            try:
                self.attack = make_attack(cfg.attack.kind, **cfg.attack.options)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"attack.options: {err}") from None
            self.malicious = choose_malicious(fed.num_parties, cfg.attack.fraction, seed)
            if not self.malicious.any():
                raise ConfigError(
                    f"attack.fraction={cfg.attack.fraction} of {fed.num_parties} parties selects no one; "
                    "raise it"
                )
            self.train_fed = self._poisoned(fed)
        self.root = (
            self._fltrust_root() if getattr(self.strategy.aggregator, "name", "") == "fltrust" else None
        )
        self.dp = None
        if cfg.privacy.mode != "none":
            from deai.engine.privacy import DPFedAvg

            self.dp = DPFedAvg(cfg, fed.num_parties)
            self.strategy.transforms = chain(*self.dp.client_transforms())
        self.stopped: str | None = None  # why the run ended before run.rounds, if it did
        self.diverged = False  # the run stopped because training diverged (see _diverged)
        self.trained_rounds = np.zeros(fed.num_parties, dtype=np.int64)  # rounds each party trained in
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
        arrays["trained_rounds"] = self.trained_rounds
        arrays["wall_time_s"] = np.array(self.state.wall_time_s)
        if self.controls is not None:
            arrays.update(self.controls.state())
        if hasattr(self.strategy.aggregator, "state"):
            arrays.update({f"agg_{k}": v for k, v in self.strategy.aggregator.state().items()})
        if self.dp is not None:
            arrays.update(self.dp.state())
        return arrays

    def load_state(self, params: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        self.state.params = params.astype(np.float32)
        self.state.round = int(arrays["round"])
        self.trained_rounds = arrays["trained_rounds"].astype(np.int64)
        self.state.wall_time_s = float(arrays["wall_time_s"])
        self.state.server_state = {
            k[len("server_") :]: v for k, v in arrays.items() if k.startswith("server_")
        }
        if self.controls is not None:
            self.controls.load(arrays)
        if self.dp is not None:
            self.dp.load(arrays)
        if hasattr(self.strategy.aggregator, "load"):
            self.strategy.aggregator.load({k[4:]: v for k, v in arrays.items() if k.startswith("agg_")})

    # -- rounds ---------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        if self._backend is None:
            f = self.train_fed
            pv = self.cfg.privacy
            opacus = pv.example_dp_engine == "opacus"
            self._backend = make_backend(
                "opacus" if opacus else self.cfg.run.backend,
                self.model,
                f.x_train,
                f.y_train,
                f.train_offsets,
                self.cfg.run.workers,
                example_dp=(pv.example_noise_multiplier, pv.example_clip_norm) if opacus else None,
            )
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def plan(self, r: int) -> RoundPlan:
        """Who takes part in round ``r`` and who reports: a pure function of the seed and the round."""
        part = self.cfg.participation
        return plan_round(
            self.cfg.run.seed,
            r,
            self.fed.num_parties,
            self.planned,
            self.speeds,
            fraction=part.fraction,
            count=part.count,
            dropout_rate=part.dropout_rate,
            deadline=part.deadline,
            straggler_policy=part.straggler_policy,
            poisson=part.poisson,
        )

    def run_round(self) -> dict[str, Any] | None:
        """Advance one round and return its metrics line (None: the privacy budget ended the run)."""
        t0 = time.perf_counter()
        cfg, st, strat = self.cfg, self.state, self.strategy
        r = st.round + 1
        plan = self.plan(r)
        ids = plan.participants
        before = (st.params, st.server_state)  # the last released model, kept if this round diverges
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
            self.trained_rounds[ids] += 1
            deltas, st.transform_state = strat.transforms.apply(
                res.deltas, st.transform_state, TransformContext(cfg.run.seed, r, ids)
            )
            weights = self.fed.train_sizes[ids].astype(np.float64)
            malicious = self.malicious[ids]
            if self.attack is not None and malicious.any():
                deltas = self.attack.craft(deltas, self._attack_context(r, ids, malicious, weights))
            check = validate_updates(
                deltas, ids, np.full(len(ids), r), r, max_norm=cfg.validation.max_update_norm
            )
            metrics["rejected"] = len(check.reasons)
            if check.reasons:
                metrics["rejected_reasons"] = check.counts()
            if set(check.reasons.values()) <= UNUSABLE and len(check.reasons) == len(ids):
                return self._diverged(
                    f"round {r}: every party's update was non-finite or too large to aggregate "
                    f"({check.counts()}), so local training diverged"
                )
            keep = check.accepted
            if self.controls is not None and keep.any():
                self.controls.update(ids[keep], res.deltas[keep], res.steps[keep], strat.local.lr)
            if keep.sum() < getattr(strat.aggregator, "min_parties", 1):
                keep[:] = False  # e.g. secure aggregation cannot hide a single update: treat as empty
                metrics["skipped"] = "too few updates for the aggregator"
            if keep.any():
                ids_k, deltas_k, weights_k, steps_k = ids[keep], deltas[keep], weights[keep], res.steps[keep]
                ctx = AggregationContext(round=r, party_ids=ids_k, steps=steps_k)
                if self.root is not None:
                    ctx.signals["server_update"] = self._root_update(r)
                if self.dp is not None:
                    honest = int((~malicious[keep]).sum())  # crafted rows carry no noise share
                    if not self._privacy_allows_release(r, honest):
                        return None  # nothing released, the round does not count
                try:
                    if self.dp is None:
                        update = strat.aggregator(deltas_k, weights_k, ctx)
                    else:
                        tctx = TransformContext(cfg.run.seed, r, ids_k)
                        update = self.dp.aggregate(deltas_k, tctx, strat.aggregator, ctx)
                        metrics.update(self.dp.record(honest))
                except (ValueError, ArithmeticError, SecAggError) as err:
                    # validated updates reached the rule, so this is the rule's limit (e.g. Krum with too
                    # few updates this round), not a crash: the round releases nothing and says why
                    name = getattr(strat.aggregator, "name", type(strat.aggregator).__name__)
                    metrics["skipped"] = f"aggregator {name} could not aggregate this round: {err}"
                    log.warning("round %d: %s", r, metrics["skipped"])
                    update = None
                if update is not None:
                    params, server_state = strat.server_opt.step(st.params, update, st.server_state)
                    if not np.all(np.isfinite(params)):
                        return self._diverged(f"round {r}: the global model became non-finite")
                    st.params, st.server_state = params, server_state
                    metrics.update(self._signals(ids_k, deltas_k, weights_k, malicious[keep], update, ctx))
            if self.dp is not None and not keep.any():
                if not self._release_noise_only(r, metrics):
                    return None
            if np.isfinite(res.train_loss).all():  # Opacus' trainer reports no loss
                metrics["train_loss"] = float(np.average(res.train_loss, weights=weights))
            metrics["update_norm_mean"] = float(row_norms(res.deltas).mean())
            metrics["mean_local_steps"] = float(res.steps.mean())
        elif self.dp is not None and not self._release_noise_only(r, metrics):
            return None
        if not np.all(np.isfinite(st.params)):  # e.g. a DP noise-only release on a huge model
            st.params, st.server_state = before
            return self._diverged(f"round {r}: the global model became non-finite")
        if r % cfg.run.eval_every == 0 or r == cfg.run.rounds:
            scores = evaluate(self.model, st.params, self.fed.x_eval, self.fed.y_eval)
            if not np.isfinite(scores["loss"]):
                st.params, st.server_state = before
                return self._diverged(f"round {r}: the global model's outputs overflow (infinite loss)")
            metrics.update(scores)
        st.round = r
        metrics["released"] = st.params is not before[0]  # did this round change the global model?
        st.wall_time_s += time.perf_counter() - t0
        metrics["wall_time_s"] = round(st.wall_time_s, 6)
        st.history.append(metrics)
        return metrics

    def run(self, on_round: Callable[[dict[str, Any]], None] | None = None) -> None:
        try:
            while self.state.round < self.cfg.run.rounds:
                if self.dp is not None and not self._privacy_allows_next_round():
                    break
                # Overflow in a diverging party's arithmetic is expected and handled (validation rejects
                # the update, the run stops as diverged); NumPy's warnings would only bury that message.
                with np.errstate(over="ignore", invalid="ignore"):
                    m = self.run_round()
                if m is None:
                    self._evaluate_last()
                    break
                if on_round is not None:
                    on_round(m)
        finally:
            self.close()

    def example_epsilon(self) -> float | None:
        """Example-level DP-SGD: the largest epsilon over parties, from the steps each actually took.

        Each party is its own data set for example-level privacy; its epsilon composes
        ``epochs * ceil(n / B)`` steps at sampling rate ``B / n`` per round it took part in.
        """
        pv = self.cfg.privacy
        if pv.example_noise_multiplier is None:
            return None
        from deai.privacy.dp.accountant import compute_epsilon

        rounds_in = self.trained_rounds
        B, E = self.strategy.local.batch_size, self.strategy.local.epochs
        worst = 0.0
        for n, r in {(int(n), int(r)) for n, r in zip(self.fed.train_sizes, rounds_in, strict=True) if r}:
            q = min(1.0, B / n)
            steps = r * E * -(-n // B)
            worst = max(
                worst, compute_epsilon(pv.example_noise_multiplier, q, steps, pv.delta, pv.accountant)
            )
        return worst

    def _diverged(self, what: str) -> None:
        """Stop the run on a diverged model or local training; the last released model stays the result."""
        lr, server_lr = self.cfg.strategy.lr, self.strategy.server_opt.lr
        self.diverged = True
        self.stopped = (
            f"diverged: {what}; the last finite model (round {self.state.round}) is kept. Lower "
            f"strategy.lr (now {lr:g}) or strategy.server_lr (now {server_lr:g}), or bound updates with "
            "strategy.clip_norm"
        )
        return None

    def _evaluate_last(self) -> None:
        """A run that stops early still reports the accuracy of the last released model."""
        if self.state.history and "accuracy" not in self.state.history[-1]:
            self.state.history[-1].update(
                evaluate(self.model, self.state.params, self.fed.x_eval, self.fed.y_eval)
            )

    def _release_noise_only(self, round_: int, metrics: dict[str, Any]) -> bool:
        """A DP round in which no update survived: central noise alone is released and accounted for.

        The Poisson-sampled Gaussian analysis covers the noisy sum over whoever was sampled, the empty
        set included, so an unchanged model would be an event outside it. Distributed noise has no one
        to add it, so such a round ends the run instead (False).
        """
        if self.cfg.privacy.mode == "distributed":
            self.stopped = f"round {round_}: no update to carry distributed noise; stopped before releasing"
            return False
        if not self._privacy_allows_release(round_, 0):
            return False
        dim = len(self.state.params)
        noise = self.dp.aggregate(
            np.zeros((0, dim), np.float32),
            TransformContext(self.cfg.run.seed, round_, np.zeros(0, np.int64)),
            self.strategy.aggregator,
            None,
        )
        self.state.params, self.state.server_state = self.strategy.server_opt.step(
            self.state.params, noise, self.state.server_state
        )
        metrics.update(self.dp.record(0))
        return True

    def _privacy_allows_next_round(self) -> bool:
        """False when even the expected number of parties would overshoot the budget (saves the training)."""
        return self._privacy_allows_release(self.state.round + 1, int(round(self.dp.expected)))

    def _privacy_allows_release(self, round_: int, reported: int) -> bool:
        """False (and ``self.stopped`` says why) when releasing this round would exceed the privacy budget."""
        from deai.engine.privacy import BudgetExceededError

        try:
            self.dp.check_budget(round_, reported)
        except BudgetExceededError as err:
            self.stopped = str(err)
            return False
        return True

    # -- attacks, defences and their signals ----------------------------------------------
    def _attack_context(
        self, round_: int, ids: np.ndarray, malicious: np.ndarray, weights: np.ndarray
    ) -> AttackContext:
        return AttackContext(
            seed=self.cfg.run.seed,
            round=round_,
            party_ids=ids,
            malicious=malicious,
            global_params=self.state.params,
            weights=weights,
            num_classes=self.fed.num_classes,
            image_shape=self.fed.image_shape,
        )

    def _poisoned(self, fed: FederatedData) -> FederatedData:
        """A copy of the federation whose malicious parties' training rows went through ``poison_data``."""
        x, y = fed.x_train.copy(), fed.y_train.copy()
        for p in np.flatnonzero(self.malicious):
            lo, hi = fed.train_offsets[p], fed.train_offsets[p + 1]
            party_seed = int(key(self.cfg.run.seed, 0, Purpose.ATTACK, int(p)) % np.uint64(2**31))
            x[lo:hi], y[lo:hi] = self.attack.poison_data(
                x[lo:hi], y[lo:hi], fed.num_classes, fed.image_shape, party_seed
            )
        return dataclasses.replace(fed, x_train=x, y_train=y)

    def _fltrust_root(self) -> tuple[np.ndarray, np.ndarray]:
        """FLTrust's clean root set: a seeded sample of honest parties' training rows held by the server."""
        f = self.fed
        owner = np.repeat(np.arange(f.num_parties), f.train_sizes)
        honest_rows = np.flatnonzero(~self.malicious[owner])
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.run.seed, int(Purpose.ATTACK), 1]))
        n = min(self.cfg.strategy.fltrust_root_size, len(honest_rows))
        rows = np.sort(rng.choice(honest_rows, size=n, replace=False))
        return f.x_train[rows], f.y_train[rows]

    def _root_update(self, round_: int) -> np.ndarray:
        x, y = self.root
        res = train_parties(
            self.model,
            x,
            y,
            np.array([0, len(y)]),
            np.array([0]),
            self.state.params,
            self.strategy.local,
            self.cfg.run.seed,
            round_,
        )
        return res.deltas[0]

    def _signals(
        self,
        ids: np.ndarray,
        deltas: np.ndarray,
        weights: np.ndarray,
        malicious: np.ndarray,
        update: np.ndarray,
        ctx: AggregationContext,
    ) -> dict[str, Any]:
        """Per-round detection signals: each party's weight and its distance and cosine to the aggregate."""
        out: dict[str, Any] = {}
        weight_keys = [k for k in ctx.signals if k.endswith("_weight")]
        if self.dp is not None:
            share = np.ones(len(ids))  # DP-FedAvg averages parties uniformly
        elif weight_keys:
            share = np.asarray(ctx.signals[weight_keys[0]], dtype=np.float64)
        elif getattr(self.strategy.aggregator, "name", "") in (
            "mean",
            "fednova",
            "norm_bound",
            "secagg",
            "he_ckks",
        ):
            share = weights / weights.sum()
        else:
            share = None  # order-statistic rules have no per-party weight
        if share is not None and share.sum() > 0:
            share = share / share.sum()
            out["malicious_weight_share"] = float(share[malicious].sum()) if malicious.any() else 0.0
        if not self.cfg.run.party_signals:
            return out
        norms = np.linalg.norm(deltas, axis=1)
        agg_norm = float(np.linalg.norm(update))
        cosine = deltas @ update / np.maximum(norms * agg_norm, 1e-12)
        signals = {
            "party": ids.tolist(),
            "malicious": malicious.tolist(),
            "update_norm": np.round(norms, 6).tolist(),
            "distance_to_aggregate": np.round(np.linalg.norm(deltas - update[None, :], axis=1), 6).tolist(),
            "cosine_to_aggregate": np.round(cosine, 6).tolist(),
        }
        if share is not None:
            signals["weight_share"] = np.round(share, 6).tolist()
        for k, v in ctx.signals.items():
            if k != "server_update" and np.ndim(v) == 1 and len(v) == len(ids):
                signals[k] = np.round(np.asarray(v, dtype=np.float64), 6).tolist()
        out["party_signals"] = signals
        return out

    # -- personalization ------------------------------------------------------------------
    def personalize(self, epochs: int) -> dict[str, float]:
        """Fine-tune the global model on each party's own data; accuracy on each party's own test split.

        Returns test-size-weighted accuracy of the global model and of the fine-tuned models,
        both on the parties' own test rows, so the two numbers are directly comparable.
        """
        f, w = self.train_fed, self.state.params
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
